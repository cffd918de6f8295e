"""The source interface and the helpers every source uses to build its splits."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, Value

from seq2seq.data.textio import file_stats
from seq2seq.errors import DataError

SPLITS = ("train", "val", "test")
PAIR_FEATURES = Features({"source": Value("string"), "target": Value("string")})
# the config node of a source, named in error messages (conf/data/*.yaml put sources under data.source)
KEY = "data.source"


class PairSource(abc.ABC):
    """Base of all sources: ``load()`` the pairs; ``cache_key()`` tells when a tokenized cache is stale."""

    @abc.abstractmethod
    def load(self) -> DatasetDict:
        """Return the splits ``train``/``val``/``test`` with the string columns ``source`` and ``target``."""

    def files(self) -> list[Path]:
        """The files ``load()`` reads; their sizes and mtimes go into the cache key."""
        return []

    def cache_key(self) -> dict[str, Any]:
        """The source's class, constructor arguments and file stats, as JSON-able data."""
        args = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else repr(self)
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return {"class": name, "args": args, "files": file_stats(self.files())}


def pairs_to_dataset(sources: Sequence[object], targets: Sequence[object]) -> Dataset:
    """Build a ``source``/``target`` string dataset from two equally long sequences, stripping whitespace."""
    return Dataset.from_dict(
        {"source": [str(text).strip() for text in sources], "target": [str(text).strip() for text in targets]},
        features=PAIR_FEATURES,
    )


def make_splits(splits: dict[str, Dataset], origins: dict[str, str]) -> DatasetDict:
    """Check that no split is empty and return them as a ``DatasetDict`` in the order train, val, test.

    Args:
        splits: ``train``/``val``/``test`` datasets.
        origins: per split, where its pairs came from (a path), for the error message.
    """
    for split in SPLITS:
        if len(splits[split]) == 0:
            raise DataError(f"the {split} split is empty ({origins[split]}): give it at least one pair")
    return DatasetDict({split: splits[split] for split in SPLITS})
