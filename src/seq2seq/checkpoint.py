"""Checkpoints of this project: what they store beside the weights, reading one, checking it, rebuilding its module.

A checkpoint is data, never code. `load_checkpoint` reads it with ``torch.load(weights_only=True)`` and checks its
format; `verify_config` refuses, before anything is instantiated, any ``_target_`` of its stored config that is not
a class of this package (``seq2seq.…``) or a torch optimizer or LR scheduler (``torch.optim.…``); `restore_module`
rebuilds the module from the verified config. `load_ensemble` and `restore_ensemble` do the same for several
checkpoints (each verified alike) that share their vocabularies, decoded as one `seq2seq.decoding.Ensemble`.
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from seq2seq.data.tokenizers import PAD_ID, tokenizer_from_str
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.modules.embeddings import load_pretrained_embeddings
from seq2seq.schedulers import lr_schedule

if TYPE_CHECKING:
    from seq2seq.lit_module import Seq2SeqModule

CHECKPOINT_KEY = "seq2seq"  # this project's entry in a Lightning checkpoint
CHECKPOINT_FORMAT = 1  # raise when the entry changes in a way older code cannot read
OLDEST_FORMAT = 1  # the oldest format this code still reads
# The packages whose classes a checkpoint may name as _target_: this one, torch optimizers and LR schedulers.
ALLOWED_PACKAGES = ("seq2seq", "torch.optim")
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

    Every ``_target_`` in them, nested ones (``_args_`` and lists included), must be a class defined in
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
    for key, value in _nodes(restored):
        if isinstance(value, str) and "${" in value:
            raise CheckpointError(
                f"{origin}: {key} = {value!r} is an interpolation, which a checkpoint (its config stored resolved) "
                "never holds: refusing to load it"
            )
        if key.endswith("._target_") and not _allowed_class(value):
            raise CheckpointError(
                f"{origin}: {key} = {value!r} is not allowed: a checkpoint may only build classes of this project "
                "(seq2seq.…) and torch optimizers and LR schedulers (torch.optim.…); refusing to load it"
            )
    return OmegaConf.create(restored)


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


def _allowed_class(target: Any) -> bool:
    """Whether ``target`` names a class defined in `ALLOWED_PACKAGES`.

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
    return isinstance(found, type) and _in_allowed_package(found.__module__)


def build_module(
    cfg: DictConfig, tokenizers: dict[str, str], config: dict[str, Any], pretrained: bool = True
) -> Seq2SeqModule:
    """Instantiate the model for these tokenizers' vocabularies and wrap it in the LightningModule.

    Args:
        cfg: a run config (the user's own, or a checkpoint's from `verify_config`).
        tokenizers: ``{"source": json, "target": json}``.
        config: the resolved run config as plain containers, saved into every checkpoint.
        pretrained: fill the embeddings from ``model.pretrained_embeddings`` (not when a checkpoint's weights
            follow: restoring, or resuming with ``ckpt_path``).
    """
    from seq2seq.lit_module import Seq2SeqModule  # lit_module imports this module to save its payload

    model = instantiate(
        cfg.model,
        src_vocab_size=tokenizer_from_str(tokenizers["source"]).get_vocab_size(),
        tgt_vocab_size=tokenizer_from_str(tokenizers["target"]).get_vocab_size(),
        joint_vocab=tokenizers["source"] == tokenizers["target"],
        pad_id=PAD_ID,
    )
    if pretrained and not cfg.get("ckpt_path"):
        load_pretrained_embeddings(model, cfg.model.get("pretrained_embeddings"), tokenizers)
    return Seq2SeqModule(
        model=model,
        teacher_forcing=instantiate(cfg.teacher_forcing),
        decoding=instantiate(cfg.decoding),
        optimizer=instantiate(cfg.optimizer),
        scheduler=lr_schedule(cfg.get("scheduler")),
        tokenizers=tokenizers,
        config=config,
    )


def load_trained(ckpt_path: str | Path, decoding: DictConfig | None = None) -> tuple[dict[str, Any], DictConfig]:
    """Read and verify a checkpoint; return it and the config to rebuild its module from.

    Args:
        ckpt_path: the checkpoint.
        decoding: the user's decoding config, in place of the checkpoint's (checked before the file is read).
    """
    if decoding:
        instantiate(decoding)  # bad decoding parameters fail here, before any model is loaded
    checkpoint = load_checkpoint(ckpt_path)
    trained = verify_config(checkpoint[CHECKPOINT_KEY]["config"], ckpt_path)
    if decoding:
        trained.decoding = decoding
    return checkpoint, trained


def restore_module(checkpoint: dict[str, Any], trained: DictConfig) -> Seq2SeqModule:
    """Rebuild the LightningModule of ``checkpoint`` from ``trained`` (see `load_trained`) and load its weights."""
    saved = checkpoint[CHECKPOINT_KEY]
    module = build_module(trained, saved["tokenizers"], config=saved["config"], pretrained=False)
    module.load_state_dict(checkpoint["state_dict"])
    return module


def checkpoint_tokenizers(checkpoint: dict[str, Any]) -> dict[str, str]:
    """The ``{"source": json, "target": json}`` tokenizers a checkpoint was trained with."""
    return checkpoint[CHECKPOINT_KEY]["tokenizers"]


def checkpoint_paths(ckpt_path: Any) -> list[str]:
    """The checkpoints ``ckpt_path`` names: one path (``ckpt_path=a.ckpt``) or a list (``ckpt_path=[a.ckpt,b.ckpt]``).

    Raises:
        ConfigError: the list is empty, or an entry is not a path.
    """
    paths = list(ckpt_path) if isinstance(ckpt_path, ListConfig | list | tuple) else [ckpt_path]
    if not paths or not all(isinstance(path, str | Path) and str(path) for path in paths):
        raise ConfigError(
            f"ckpt_path={ckpt_path}: pass one checkpoint, ckpt_path=a.ckpt, or an ensemble, ckpt_path=[a.ckpt,b.ckpt]"
        )
    return [str(path) for path in paths]


def load_ensemble(
    ckpt_paths: Sequence[str | Path], decoding: DictConfig | None = None
) -> list[tuple[dict[str, Any], DictConfig]]:
    """Read and verify several checkpoints (see `load_trained`, each through the allow-list) for one ensemble.

    Args:
        ckpt_paths: the checkpoints, at least one.
        decoding: the user's decoding config, in place of each checkpoint's (checked before any file is read).

    Returns:
        ``(checkpoint, trained config)`` of each, in order.

    Raises:
        CheckpointError: one is missing, foreign or refused, or its source or target tokenizer differs from the
            first checkpoint's (an ensemble averages distributions over one vocabulary, fed one source encoding).
    """
    members = [load_trained(path, decoding) for path in ckpt_paths]  # bad decoding parameters fail on the first
    check_same_vocabularies(
        ckpt_paths,
        [checkpoint for checkpoint, _ in members],
        "an ensemble needs checkpoints with the same vocabularies (runs on the same data and tokenizer settings)",
    )
    return members


def check_same_vocabularies(paths: Sequence[str | Path], checkpoints: Sequence[dict[str, Any]], fix: str) -> None:
    """Raise a `CheckpointError` ending in ``fix`` if a checkpoint's source or target tokenizer differs from the
    first one's (ensembles and averages need one vocabulary)."""
    first = checkpoint_tokenizers(checkpoints[0])
    for path, checkpoint in zip(paths[1:], checkpoints[1:]):
        tokenizers = checkpoint_tokenizers(checkpoint)
        for side in ("source", "target"):
            if tokenizers[side] != first[side]:
                raise CheckpointError(f"{path} and {paths[0]} have different {side} tokenizers: {fix}")


def restore_ensemble(members: Sequence[tuple[dict[str, Any], DictConfig]]) -> Seq2SeqModule:
    """The LightningModule of the first checkpoint, its model replaced by the `Ensemble` of all (`load_ensemble`'s
    output); a single checkpoint is restored as it is, with its own model.

    The first checkpoint's config (data, decoding, tokenizers) is the module's: the others share its vocabularies.
    """
    modules = [restore_module(checkpoint, trained) for checkpoint, trained in members]
    if len(modules) > 1:
        modules[0].model = Ensemble([module.model for module in modules])
    return modules[0]
