"""The on-disk cache of encoded splits and tokenizers: one folder per key, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from datasets import DatasetDict
from tokenizers import Tokenizer

from seq2seq.data.encoding import EncodedData, quiet_progress

log = logging.getLogger("seq2seq.data")
# 3: val/test are no longer length-filtered (only their sources truncated); train drops empty pairs
CACHE_VERSION = 3
_META = "meta.json"
_SOURCE_TOKENIZER = "tokenizer.source.json"
_TARGET_TOKENIZER = "tokenizer.target.json"


def cache_key(payload: dict[str, Any]) -> str:
    """A short stable hash of JSON-able ``payload`` (the source config, file stats, tokenizer settings)."""
    text = json.dumps({"version": CACHE_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def load_cached(path: Path) -> EncodedData | None:
    """The cached data at ``path``, or ``None`` when there is none or it cannot be read.

    A damaged folder is left as it is; ``save_cached(..., replace=True)`` puts a new one in its place.
    """
    if not (path / _META).is_file():
        return None
    try:
        meta = json.loads((path / _META).read_text(encoding="utf-8"))
        return EncodedData(
            DatasetDict.load_from_disk(str(path / "dataset")),
            Tokenizer.from_file(str(path / _SOURCE_TOKENIZER)),
            Tokenizer.from_file(str(path / _TARGET_TOKENIZER)),
            dict(meta["dropped"]),
            dict(meta["truncated"]),
        )
    except Exception as error:  # a damaged cache is rebuilt (and replaced), never fatal
        log.warning("ignoring unreadable cache %s (%s)", path, error)
        return None


def save_cached(data: EncodedData, path: Path, payload: dict[str, Any], replace: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically: into a temporary folder next to it, then one rename.

    Several processes (DDP ranks, parallel runs) may race; the first rename wins and the others discard their copy.
    A cache that cannot be written only logs a warning.

    Args:
        replace: the folder at ``path`` is damaged (``load_cached`` could not read it): move it aside and put the
            new one in its place, so the next run loads it. Readers never see a half-written folder.

    Returns:
        Whether ``path`` now holds a complete cache.
    """
    temporary = path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        temporary.mkdir(parents=True)
        with quiet_progress():
            data.splits.save_to_disk(str(temporary / "dataset"))
        data.src_tokenizer.save(str(temporary / _SOURCE_TOKENIZER))
        data.tgt_tokenizer.save(str(temporary / _TARGET_TOKENIZER))
        meta = {"version": CACHE_VERSION, "dropped": data.dropped, "truncated": data.truncated, "key": payload}
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
