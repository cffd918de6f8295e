"""The on-disk cache of encoded splits and tokenizers: one folder per key, written atomically.

A folder holds ``meta.json``, the two tokenizers and one Arrow file per split (``dataset/<split>/data.arrow``),
which the encoding writes straight into (see :func:`staging_folder`) and later runs memory-map.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer

from seq2seq.data.encoding import EncodedData, split_file

log = logging.getLogger("seq2seq.data")
# 3: val/test are no longer length-filtered (only their sources truncated); train drops empty pairs
# 4: one Arrow file per split, written by the encoding itself (ids int32), instead of DatasetDict.save_to_disk
CACHE_VERSION = 4
_META = "meta.json"
_SOURCE_TOKENIZER = "tokenizer.source.json"
_TARGET_TOKENIZER = "tokenizer.target.json"


def cache_key(payload: dict[str, Any]) -> str:
    """A short stable hash of JSON-able ``payload`` (the source config, file stats, tokenizer settings)."""
    text = json.dumps({"version": CACHE_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def load_cached(path: Path) -> EncodedData | None:
    """The cached data at ``path`` (memory-mapped), or ``None`` when there is none or it cannot be read.

    A damaged folder is left as it is; ``save_cached(..., replace=True)`` puts a new one in its place.
    """
    if not (path / _META).is_file():
        return None
    try:
        meta = json.loads((path / _META).read_text(encoding="utf-8"))
        splits = {split: Dataset.from_file(str(split_file(path, split))) for split in meta["splits"]}
        return EncodedData(
            DatasetDict(splits),
            Tokenizer.from_file(str(path / _SOURCE_TOKENIZER)),
            Tokenizer.from_file(str(path / _TARGET_TOKENIZER)),
            dict(meta["dropped"]),
            dict(meta["truncated"]),
        )
    except Exception as error:  # a damaged cache is rebuilt (and replaced), never fatal
        log.warning("ignoring unreadable cache %s (%s)", path, error)
        return None


@contextmanager
def staging_folder(path: Path) -> Iterator[Path]:
    """A new temporary folder next to ``path`` for the encoding to write into; removed if the block fails.

    Hand it to :func:`save_cached` (``staged=``), which completes it and renames it to ``path``.
    """
    temporary = path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir(parents=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _write_split(dataset: Dataset, file: Path) -> None:
    """Stream ``dataset`` (indices applied) into one Arrow file, batch by batch."""
    file.parent.mkdir(parents=True, exist_ok=True)
    schema = dataset.features.arrow_schema
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for table in dataset.with_format("arrow").iter(batch_size=10_000):
            writer.write_table(table.cast(schema))


def save_cached(
    data: EncodedData, path: Path, payload: dict[str, Any], replace: bool = False, staged: Path | None = None
) -> bool:
    """Write ``data`` to ``path`` atomically: into a temporary folder next to it, then one rename.

    Several processes (DDP ranks, parallel runs) may race; the first rename wins and the others discard their copy.
    A cache that cannot be written only logs a warning.

    Args:
        replace: the folder at ``path`` is damaged (``load_cached`` could not read it): move it aside and put the
            new one in its place, so the next run loads it. Readers never see a half-written folder.
        staged: the :func:`staging_folder` the splits were encoded into; splits not there yet are written.

    Returns:
        Whether ``path`` now holds a complete cache.
    """
    temporary = staged or path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        temporary.mkdir(parents=True, exist_ok=staged is not None)
        for split, dataset in data.splits.items():
            if not split_file(temporary, split).is_file():
                _write_split(dataset, split_file(temporary, split))
        data.src_tokenizer.save(str(temporary / _SOURCE_TOKENIZER))
        data.tgt_tokenizer.save(str(temporary / _TARGET_TOKENIZER))
        meta = {
            "version": CACHE_VERSION,
            "splits": list(data.splits),
            "dropped": data.dropped,
            "truncated": data.truncated,
            "key": payload,
        }
        (temporary / _META).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        if replace:
            _discard(path)
        os.rename(temporary, path)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if (path / _META).is_file():
            return True  # another process finished first
        log.warning("could not write the data cache %s (%s); continuing without it", path, error)
        return False
    return True


def _discard(path: Path) -> None:
    """Remove the folder ``path``: renamed aside first (one atomic step), then deleted."""
    damaged = path.parent / f".damaged-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, damaged)
    except FileNotFoundError:
        return  # another process moved it first
    shutil.rmtree(damaged, ignore_errors=True)
