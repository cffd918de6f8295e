"""The batch order: a length-bucketing batch sampler, reshuffled per epoch and sharded across DDP ranks, and a
``DataLoader`` that checkpoints its place in that order so a resumed run serves exactly the batches left."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from seq2seq.errors import CheckpointError, DataError


class EpochShuffle(Sampler[int]):
    """All indices in a seeded random order that changes with :meth:`set_epoch` (in order without shuffle).

    It is the ``sampler`` inside :class:`BucketBatchSampler`, where Lightning finds it: Lightning calls
    ``dataloader.batch_sampler.sampler.set_epoch(epoch)`` at the start of every epoch.
    """

    def __init__(self, size: int, shuffle: bool, seed: int) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of this epoch."""
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        """A generator seeded by the seed and the epoch; it first draws the index order."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        return iter(torch.randperm(self.size, generator=self.generator()).tolist())

    def __len__(self) -> int:
        return self.size


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length (little padding), reshuffled every epoch, sharded across DDP ranks.

    Training (``shuffle=True``): shuffle all indices with ``seed`` and the epoch, sort each chunk of
    ``batch_size * bucket_size_multiplier`` indices by length, cut it into batches, shuffle the batches. Rank ``r``
    gets batches ``r, r + num_replicas, …``; batches are repeated so that every rank gets the same number (DDP
    would hang otherwise).

    The position within the epoch is state (:meth:`state_dict`, :meth:`load_state_dict`): a sampler loaded with the
    state of one that served ``k`` batches serves the remaining ones, then the next epoch from its start.

    Evaluation (``shuffle=False``): indices sorted by length globally, cut into batches, dealt out the same way but
    without repeats, so no example is counted twice (ranks may get one batch fewer). With fewer batches than ranks,
    the split is cut into ``num_replicas`` smaller batches instead: a rank without a batch would skip evaluation and
    leave the others waiting for it in the metric sync. A split with fewer examples than ranks is a
    :class:`~seq2seq.errors.DataError`.

    Args:
        lengths: a length per example (e.g. source + target tokens).
        batch_size: examples per batch (the last batch of a chunk may be smaller).
        shuffle: training mode, see above.
        seed: the shuffle seed; :meth:`set_epoch` varies it per epoch.
        num_replicas, rank: the DDP world size and this process's rank.
        bucket_size_multiplier: chunk size in batches; larger means less padding but less randomness.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        bucket_size_multiplier: int = 50,
    ) -> None:
        if batch_size < 1 or bucket_size_multiplier < 1:
            raise ValueError(
                f"batch_size={batch_size} and bucket_size_multiplier={bucket_size_multiplier} must be >= 1"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} is not in [0, num_replicas={num_replicas})")
        if not shuffle and 0 < len(lengths) < num_replicas:
            raise DataError(
                f"an evaluation split is shorter ({len(lengths)}) than the number of processes that share it "
                f"({num_replicas}), each needing a pair: evaluate on fewer devices (trainer.devices={len(lengths)})"
            )
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)  # (N,)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.bucket_size = batch_size * bucket_size_multiplier
        self.sampler = EpochShuffle(len(self.lengths), shuffle, seed)
        self.start = 0  # batches of this epoch to skip at the next iteration (set by load_state_dict)
        self.batches_done = 0  # batches of this epoch served so far on this rank, skipped ones included

    @property
    def epoch(self) -> int:
        """The epoch whose order is served."""
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle for this epoch (Lightning calls it on ``self.sampler`` at every epoch start)."""
        if epoch != self.sampler.epoch:
            self.start = 0  # a loaded position belongs to its own epoch
        self.sampler.set_epoch(epoch)

    def settings(self) -> dict[str, int]:
        """What decides the batches of an epoch besides the epoch itself (see `load_state_dict`)."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_replicas": self.num_replicas,
            "dataset_size": len(self.lengths),
            "num_batches": len(self),
        }

    def state_dict(self) -> dict[str, int]:
        """Where this rank stands in the training order: the epoch, how many of its batches were served, and the
        settings that made them."""
        return {"epoch": self.epoch, "batches_done": self.batches_done, **self.settings()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from ``state``: the next iteration serves the batches of its epoch after ``batches_done``.

        Raises:
            CheckpointError: the epoch was unfinished and this sampler cuts it differently (another seed, batch
                size, number of ranks or data set), so its remaining batches cannot be told. An epoch-end state
                accepts any settings: the next epoch starts from its beginning.
        """
        settings = self.settings()
        changed = [name for name in settings if name in state and state[name] != settings[name]]  # older: fewer
        if state["batches_done"] < state["num_batches"] and changed:
            raise CheckpointError(
                f"the checkpoint stopped after batch {state['batches_done']} of {state['num_batches']} of an epoch "
                f"with {_describe({name: state[name] for name in changed})}, this run has "
                f"{_describe({name: settings[name] for name in changed})}, which would replay or skip data: resume "
                "from an epoch-end last.ckpt (written at every validation), or with the original seed, data, "
                "data.batch_size and number of devices"
            )
        self.sampler.set_epoch(state["epoch"])
        self.start = self.batches_done = state["batches_done"]

    def _num_batches(self) -> int:
        """Batches over all ranks, before the training repeats."""
        total = len(self.lengths)
        if not self.shuffle:
            return max(math.ceil(total / self.batch_size), self.num_replicas if total else 0)
        full, rest = divmod(total, self.bucket_size)
        return full * math.ceil(self.bucket_size / self.batch_size) + math.ceil(rest / self.batch_size)

    def batches(self) -> list[list[int]]:
        """All batches of this epoch over all ranks, in order."""
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True)  # (N,)
            if math.ceil(len(order) / self.batch_size) < self.num_replicas:  # one (smaller) batch for every rank
                return [chunk.tolist() for chunk in order.tensor_split(self.num_replicas)]
            return [chunk.tolist() for chunk in order.split(self.batch_size)]
        generator = self.sampler.generator()
        order = torch.randperm(len(self.lengths), generator=generator)  # (N,), the same order as iter(self.sampler)
        batches: list[Tensor] = []
        for bucket in order.split(self.bucket_size):
            bucket = bucket[torch.argsort(self.lengths[bucket], stable=True)]
            batches.extend(bucket.split(self.batch_size))
        return [batches[i].tolist() for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        if self.shuffle and batches:
            wanted = len(self) * self.num_replicas
            while len(batches) < wanted:  # repeat from the start so every rank gets len(self) batches
                batches += batches[: wanted - len(batches)]
        start, self.start = self.start, 0
        self.batches_done = start
        for batch in batches[self.rank :: self.num_replicas][start:]:
            self.batches_done += 1
            yield batch

    def __len__(self) -> int:
        total = self._num_batches()
        if self.shuffle:
            return math.ceil(total / self.num_replicas)
        return len(range(self.rank, total, self.num_replicas))


def _describe(settings: dict[str, int]) -> str:
    """Sampler settings in the user's terms: ``seed=42, data.batch_size=32, 1 process, 4000 training pairs``."""
    words = {
        "seed": lambda n: f"seed={n}",
        "batch_size": lambda n: f"data.batch_size={n}",
        "num_replicas": lambda n: f"{n} process" + ("es" if n != 1 else ""),
        "dataset_size": lambda n: f"{n} training pairs",
        "num_batches": lambda n: f"{n} batches per process",
    }
    return ", ".join(words[name](value) for name, value in settings.items())


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`BucketBatchSampler` whose place in the epoch goes into checkpoints.

    Lightning's fit loop stores ``state_dict()`` of a stateful training loader in every checkpoint and calls
    ``load_state_dict()`` when a run resumes, before it iterates; the resumed epoch then serves exactly the batches it
    had left. The loader counts the batches it has handed out itself, because with worker processes the sampler runs
    ahead of training.
    """

    _batches_done = 0  # batches of the current epoch handed out, skipped ones included

    def __iter__(self) -> Iterator[Any]:
        # a generator: nothing is drawn from the sampler until the first batch is asked for, i.e. after the fit
        # loop's set_epoch (on resume it calls iter() before that)
        self._batches_done = self.batch_sampler.start
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The sampler's state, with the batches training has actually received."""
        return {**self.batch_sampler.state_dict(), "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a checkpoint's ``state_dict()``."""
        self.batch_sampler.load_state_dict(state)
        self._batches_done = state["batches_done"]
