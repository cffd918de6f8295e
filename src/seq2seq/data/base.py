"""The source interface and the helpers every source uses to build its splits."""

from __future__ import annotations

import abc
import atexit
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
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


_SCRATCH: dict[int, Path] = {}  # process id -> its scratch folder


def scratch_folder() -> Path:
    """This process's folder for Arrow files of raw pairs (in the temp dir), removed when the process exits."""
    pid = os.getpid()
    if pid not in _SCRATCH:
        _SCRATCH[pid] = Path(tempfile.mkdtemp(prefix="seq2seq-pairs-"))
        atexit.register(lambda: os.getpid() == pid and shutil.rmtree(_SCRATCH[pid], ignore_errors=True))
    return _SCRATCH[pid]


def pair_batches_to_dataset(batches: Iterable[tuple[Sequence[str], Sequence[str]]]) -> Dataset:
    """Stream batches of ``(sources, targets)`` into a memory-mapped Arrow file; whitespace stripped as in
    :func:`pairs_to_dataset`, which this equals without ever holding all pairs in memory.
    """
    schema = PAIR_FEATURES.arrow_schema
    path = scratch_folder() / f"pairs-{uuid.uuid4().hex}.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for sources, targets in batches:
            columns = [pa.array([text.strip() for text in sources], pa.string()),
                       pa.array([text.strip() for text in targets], pa.string())]  # fmt: skip
            writer.write_batch(pa.record_batch(columns, schema=schema))
    return Dataset.from_file(str(path))


def discard_scratch(splits: DatasetDict) -> None:
    """Delete the scratch Arrow files of raw ``splits`` once nothing will read them again (a mapped file stays
    readable until it is unmapped, so a live dataset is not broken)."""
    folder = _SCRATCH.get(os.getpid())
    for dataset in splits.values():
        for file in dataset.cache_files:
            path = Path(file["filename"])
            if folder is not None and path.parent == folder:
                path.unlink(missing_ok=True)


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
