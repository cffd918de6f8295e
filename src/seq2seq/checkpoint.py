"""Checkpoints of this project: what they store beside the weights, reading one, and checking it.

A checkpoint is data, never code. `load_checkpoint` reads it with ``torch.load(weights_only=True)`` and checks its
format; `verify_config` refuses, before anything is instantiated, any ``_target_`` of its stored config that its
config group may not build (`ALLOWED_TARGETS`: model classes for ``model``, searches for ``decoding``, torch
optimizers for ``optimizer``, …). `seq2seq.build` rebuilds the module from the verified config.
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.data.base import PairSource
from seq2seq.data.datamodule import Seq2SeqDataModule
from seq2seq.decoding import BeamSearch, GreedySearch
from seq2seq.errors import CheckpointError
from seq2seq.modules import Seq2Seq
from seq2seq.teacher_forcing import Schedule

CHECKPOINT_KEY = "seq2seq"  # this project's entry in a Lightning checkpoint
CHECKPOINT_FORMAT = 1  # raise when the entry changes in a way older code cannot read
OLDEST_FORMAT = 1  # the oldest format this code still reads
# The packages whose classes a checkpoint may name as _target_: this one, torch optimizers and LR schedulers.
ALLOWED_PACKAGES = ("seq2seq", "torch.optim")
# Where a stored config may hold a _target_, and what it may build there: (group, key under the group) → allowed
# base classes. Any other _target_ (a nested one under model, an _args_ item…) is refused, so a key that is not one
# of these never instantiates anything.
ALLOWED_TARGETS: dict[tuple[str, str], tuple[type, ...]] = {
    ("model", ""): (Seq2Seq,),
    ("teacher_forcing", ""): (Schedule,),
    ("decoding", ""): (GreedySearch, BeamSearch),
    ("optimizer", ""): (torch.optim.Optimizer,),
    ("scheduler", ""): (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
    ("data", ""): (Seq2SeqDataModule,),
    ("data", "source"): (PairSource,),
}
# The stored config groups a module is rebuilt from; the rest (trainer, callbacks, logger, paths) is never
# instantiated from a checkpoint, so it is left out of the restored config.
RESTORED_GROUPS = ("model", "teacher_forcing", "decoding", "optimizer", "scheduler", "data")
OPTIONAL_GROUPS = ("scheduler",)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
REMEDY = "use another checkpoint of the run, such as best.ckpt or the previous last.ckpt"


def save_payload(checkpoint: dict[str, Any], config: dict[str, Any], tokenizers: dict[str, str]) -> None:
    """Add this project's entry to a Lightning ``checkpoint`` (in ``on_save_checkpoint``).

    Plain containers only, so ``torch.load(weights_only=True)`` can read it back.

    Args:
        checkpoint: the dict Lightning is about to save.
        config: the resolved run config as plain containers.
        tokenizers: ``{"source": json, "target": json}``.
    """
    checkpoint[CHECKPOINT_KEY] = {"format": CHECKPOINT_FORMAT, "config": config, "tokenizers": dict(tokenizers)}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by this project with ``weights_only=True`` and check its format.

    Raises:
        CheckpointError: the file is missing, damaged, not one of this project's, or of a format this code
            does not read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/<name>.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exception:
        raise _unreadable(path, exception) from None
    saved = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this project: pass a .ckpt written by src/train.py")
    _check_format(path, saved.get("format"))
    tokenizers = saved.get("tokenizers")
    if not isinstance(saved.get("config"), dict) or not (
        isinstance(tokenizers, dict) and all(isinstance(tokenizers.get(side), str) for side in ("source", "target"))
    ):
        raise CheckpointError(f"{path} lacks its run config or tokenizers: pass a .ckpt written by src/train.py")
    return checkpoint


def _unreadable(path: Path, exception: Exception) -> CheckpointError:
    """The error for a file ``torch.load`` could not read: damaged, not data only, or not a checkpoint at all."""
    reason = f"{type(exception).__name__}: {' '.join(str(exception).split())[:120]}"
    if "Weights only load failed" in str(exception):
        return CheckpointError(
            f"{path} is not a checkpoint of this project: it holds objects other than tensors and plain data "
            "(left unread: unpickling them could run code); pass a .ckpt written by src/train.py"
        )
    with open(path, "rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if not head or (head == ZIP_MAGIC and _cut_short(path)):
        return CheckpointError(
            f"{path} is damaged or incomplete ({'empty' if not head else reason}), e.g. a copy or a save that was "
            f"cut short: {REMEDY}"
        )
    return CheckpointError(
        f"{path} is not a checkpoint of this project ({reason}): pass a .ckpt written by src/train.py"
    )


def _cut_short(path: Path) -> bool:
    """Whether a file that starts like a zip archive (what torch.save writes) failed to load for damage.

    Either its end (the zip directory) is missing or unreadable, or it is a torch archive that torch could not
    read; a whole zip archive without a torch pickle is another kind of file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return True
    return any(name.endswith("/data.pkl") for name in names)


def _check_format(path: Path, version: Any) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(
            f"{path} has no valid checkpoint format number ({version!r}): it was written by another program or an "
            f"early version of this project; this one reads formats {OLDEST_FORMAT}-{CHECKPOINT_FORMAT}"
        )
    if version > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a format {version} checkpoint, written by a newer version of this project; this one reads "
            f"formats up to {CHECKPOINT_FORMAT}: upgrade the project (git pull, or pip install -U) to use it"
        )
    if version < OLDEST_FORMAT:
        raise CheckpointError(
            f"{path} is a format {version} checkpoint, older than this version of the project reads "
            f"({OLDEST_FORMAT}-{CHECKPOINT_FORMAT}): use the version that wrote it, or train again"
        )


def verify_config(config: dict[str, Any], origin: str | Path) -> DictConfig:
    """The groups of a checkpoint's stored ``config`` a module is rebuilt from, checked before anything runs.

    Every ``_target_`` in them must sit where `ALLOWED_TARGETS` expects one and name a class that its group may
    build (``model`` a model class, ``decoding`` a search, ``optimizer`` a torch optimizer, …), defined in
    `ALLOWED_PACKAGES`; no string may hold an interpolation (a stored config is resolved, and resolvers such as
    ``oc.decode`` could turn a string into a new ``_target_`` after this check).

    Args:
        config: the stored config, as plain containers.
        origin: the checkpoint, for error messages.

    Raises:
        CheckpointError: naming the first refused key and its value.
    """
    for group in RESTORED_GROUPS:
        if not isinstance(config.get(group), dict) and not (group in OPTIONAL_GROUPS and config.get(group) is None):
            raise CheckpointError(f"{origin} has no {group} config: pass a .ckpt written by src/train.py")
    restored = {group: config.get(group) for group in RESTORED_GROUPS}
    for group, settings in restored.items():
        check_targets(group, settings, origin)
    return OmegaConf.create(restored)


def verify_decoding(decoding: Any, origin: str = "decoding") -> None:
    """Check a decoding config (the user's, or one stored beside exported graphs) as `verify_config` checks a
    checkpoint's: its ``_target_`` must be a search.

    Raises:
        CheckpointError: naming the refused key and its value.
    """
    if isinstance(decoding, DictConfig):
        decoding = OmegaConf.to_container(decoding, resolve=True)
    check_targets("decoding", decoding, origin)


def check_targets(group: str, settings: Any, origin: str | Path) -> None:
    """Refuse any interpolation, and any ``_target_`` under ``group`` that `ALLOWED_TARGETS` does not allow there.

    Raises:
        CheckpointError: one line naming the key, its value and what the group may build.
    """
    for key, value in _nodes(settings, group):
        if isinstance(value, str) and "${" in value:
            raise CheckpointError(
                f"{origin}: {key} = {value!r} is an interpolation, which a checkpoint (its config stored resolved) "
                "never holds: refusing to load it"
            )
        if not key.endswith("._target_"):
            continue
        place = (group, key[len(group) + 1 : -len("._target_")])
        if place not in ALLOWED_TARGETS or not _allowed_class(value, ALLOWED_TARGETS[place]):
            raise CheckpointError(
                f"{origin}: {key} = {value!r} is not allowed: a checkpoint may only build this project's (seq2seq.…) "
                f"and torch's classes, each group its own kind; {group} may build {allowed_in(group)}; refusing to "
                "load it"
            )


def allowed_in(group: str) -> str:
    """What `ALLOWED_TARGETS` lets ``group`` build, in words: ``model._target_: a subclass of …``."""
    return " and ".join(
        f"{'.'.join(filter(None, (name, key, '_target_')))}: a subclass of "
        + " or ".join(f"{base.__module__}.{base.__qualname__}" for base in bases)
        for (name, key), bases in ALLOWED_TARGETS.items()
        if name == group
    )


def _nodes(node: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every (dotted key, value) pair under ``node``, depth first; list items are keyed ``key[i]``."""
    if isinstance(node, dict):
        items = [(f"{key}.{name}" if key else str(name), value) for name, value in node.items()]
    elif isinstance(node, list | tuple):
        items = [(f"{key}[{i}]", value) for i, value in enumerate(node)]
    else:
        return []
    return [pair for name, value in items for pair in [(name, value), *_nodes(value, name)]]


def _in_allowed_package(name: str) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in ALLOWED_PACKAGES)


def _allowed_class(target: Any, bases: tuple[type, ...]) -> bool:
    """Whether ``target`` names a subclass of one of ``bases``, defined in `ALLOWED_PACKAGES`.

    The name is checked before anything is imported, so only modules of the allowed packages are; the object it
    leads to is checked too, since a path such as ``seq2seq.checkpoint.torch.hub.load`` reaches a function
    elsewhere through a module attribute.
    """
    if not isinstance(target, str) or not _in_allowed_package(target):
        return False
    parts = target.split(".")
    if not all(part.isidentifier() and not part.startswith("_") for part in parts):
        return False  # no private or dunder attributes (``Class.__init__``, ``__globals__``…)
    try:
        found: Any = importlib.import_module(parts[0])
        for depth, part in enumerate(parts[1:], start=2):
            # an attribute, else a submodule not imported yet (its name is under an allowed package, checked above)
            found = getattr(found, part) if hasattr(found, part) else importlib.import_module(".".join(parts[:depth]))
    except Exception:
        return False
    return isinstance(found, type) and _in_allowed_package(found.__module__) and issubclass(found, bases)


def checkpoint_tokenizers(checkpoint: dict[str, Any]) -> dict[str, str]:
    """The ``{"source": json, "target": json}`` tokenizers a checkpoint was trained with."""
    return checkpoint[CHECKPOINT_KEY]["tokenizers"]


def check_same_vocabularies(paths: Sequence[str | Path], checkpoints: Sequence[dict[str, Any]], fix: str) -> None:
    """Raise a `CheckpointError` ending in ``fix`` if a checkpoint's source or target tokenizer differs from the
    first one's (ensembles and averages need one vocabulary)."""
    first = checkpoint_tokenizers(checkpoints[0])
    for path, checkpoint in zip(paths[1:], checkpoints[1:]):
        tokenizers = checkpoint_tokenizers(checkpoint)
        for side in ("source", "target"):
            if tokenizers[side] != first[side]:
                raise CheckpointError(f"{path} and {paths[0]} have different {side} tokenizers: {fix}")
