"""Synthetic tasks with a known answer, for checking that a model learns at all."""

from __future__ import annotations

import random
from dataclasses import dataclass

from datasets import Dataset, DatasetDict

from seq2seq.data.base import PairSource, make_splits, pairs_to_dataset
from seq2seq.errors import ConfigError


@dataclass
class ReverseSource(PairSource):
    """Random token sequences (``t0`` … ``t{V-1}``, space separated) whose target is the same sequence reversed.

    Deterministic: the train, val and test splits come from the seeds ``"{seed}/train"``, ``"{seed}/val"`` and
    ``"{seed}/test"``, so they differ from each other but not between runs.

    Args:
        vocab_size: number of distinct tokens V.
        min_length, max_length: the sequence length is uniform in ``[min_length, max_length]``.
        num_train, num_val, num_test: pairs per split.
        seed: the base seed.
    """

    vocab_size: int = 20
    min_length: int = 3
    max_length: int = 12
    num_train: int = 20000
    num_val: int = 500
    num_test: int = 500
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ConfigError(f"data.source.vocab_size={self.vocab_size}: needs at least 1 token")
        if not 1 <= self.min_length <= self.max_length:
            raise ConfigError(
                f"data.source.min_length={self.min_length}, max_length={self.max_length}: "
                "need 1 <= min_length <= max_length"
            )
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.source.{name}={getattr(self, name)}: needs at least 1 pair")

    def _generate(self, count: int, split: str) -> Dataset:
        rng = random.Random(f"{self.seed}/{split}")
        words = [f"t{i}" for i in range(self.vocab_size)]
        sources, targets = [], []
        for _ in range(count):
            tokens = rng.choices(words, k=rng.randint(self.min_length, self.max_length))
            sources.append(" ".join(tokens))
            targets.append(" ".join(reversed(tokens)))
        return pairs_to_dataset(sources, targets)

    def load(self) -> DatasetDict:
        """Generate the three splits."""
        counts = {"train": self.num_train, "val": self.num_val, "test": self.num_test}
        splits = {split: self._generate(count, split) for split, count in counts.items()}
        return make_splits(splits, {split: "generated" for split in counts})
