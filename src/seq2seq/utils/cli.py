"""What the entry points share: one-line user errors, config groups, and run files written whole."""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.utils.quiet import quiet_lightning

log = logging.getLogger("seq2seq")


def entry_point(script: str) -> logging.Logger:
    """What every ``src/*.py`` entry point does on import: point ``PROJECT_ROOT`` at the repository holding
    ``script`` (conf/paths reads it, whatever the shell may hold for another project; ``paths.root_dir=DIR`` moves
    data, cache and logs on purpose), keep Lightning's start-up noise off the terminal, and return the log."""
    os.environ["PROJECT_ROOT"] = str(Path(script).resolve().parents[1])
    quiet_lightning()
    return log


def user_error(exception: BaseException) -> Seq2SeqError | None:
    """The `Seq2SeqError` behind ``exception``, looking through wrappers such as Hydra's."""
    seen = set()
    while exception is not None and id(exception) not in seen:
        if isinstance(exception, Seq2SeqError):
            return exception
        if isinstance(exception, MissingMandatoryValue):
            return ConfigError(f"{exception.full_key} is not set: pass {exception.full_key}=VALUE")
        seen.add(id(exception))
        exception = exception.__cause__ or exception.__context__
    return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `Seq2SeqError`, however deeply wrapped, into one ``error: …`` line and exit code 2."""
    try:
        yield
    except Exception as exception:
        error = user_error(exception)
        if error is None:
            raise
        log.debug("user error", exc_info=exception)
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group such as ``callbacks`` or ``logger``.

    An entry whose target returns ``None`` is off (e.g. ``seq2seq.callbacks.early_stopping`` without a patience).
    """
    if not group:
        return []
    built = [instantiate(entry) for entry in group.values() if isinstance(entry, DictConfig) and "_target_" in entry]
    return [item for item in built if item is not None]


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts and lists (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True)


@contextmanager
def atomic_open(path: str | Path, newline: str | None = None, binary: bool = False) -> Iterator[TextIO | BinaryIO]:
    """Open ``path`` to write UTF-8 text (or bytes) that readers see whole or not at all, never in part.

    The content goes to a temporary file beside ``path``, which replaces it once written and synced; if writing
    fails (a full disk, an exception, a killed process), ``path`` keeps its previous content.

    Args:
        path: the file to write.
        newline: as for `open` (``""`` for the csv module); text only.
        binary: write bytes (e.g. ``torch.save`` into the file) instead of text.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    options = {"mode": "xb"} if binary else {"mode": "x", "encoding": "utf-8", "newline": newline}
    try:
        with open(temporary, **options) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (see `atomic_open`)."""
    with atomic_open(path) as file:
        file.write(text)


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` (tensors or numbers) to ``path`` as JSON, sorted by name, atomically.

    Counts (``*/num_sentences``) stay whole numbers; every other number is a plain float.
    """
    values = {
        name: (int(value) if name.endswith("num_sentences") else float(value))
        if isinstance(value, torch.Tensor | int | float)
        else value
        for name, value in metrics.items()
    }
    write_text_atomic(path, json.dumps(dict(sorted(values.items())), indent=2) + "\n")
