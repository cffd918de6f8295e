"""What the entry points share: one-line user errors, run files, checkpoints and building the module."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from seq2seq.data.tokenizers import PAD_ID, tokenizer_from_str
from seq2seq.errors import CheckpointError, ConfigError, Seq2SeqError
from seq2seq.lit_module import CHECKPOINT_KEY, Seq2SeqModule
from seq2seq.modules.embeddings import load_pretrained_embeddings

log = logging.getLogger("seq2seq")


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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by this project with ``weights_only=True``; one-line error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/<name>.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exception:
        raise CheckpointError(
            f"{path} is not a checkpoint of this project ({type(exception).__name__}): "
            "pass a .ckpt written by src/train.py"
        ) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this project: pass a .ckpt written by src/train.py")
    return checkpoint


def build_module(
    cfg: DictConfig, tokenizers: dict[str, str], config: dict[str, Any], pretrained: bool = True
) -> Seq2SeqModule:
    """Instantiate the model for these tokenizers' vocabularies and wrap it in the LightningModule.

    ``pretrained``: fill the embeddings from ``model.pretrained_embeddings`` (not when a checkpoint's weights follow:
    restoring, or resuming with ``ckpt_path``).
    """
    model = instantiate(
        cfg.model,
        src_vocab_size=tokenizer_from_str(tokenizers["source"]).get_vocab_size(),
        tgt_vocab_size=tokenizer_from_str(tokenizers["target"]).get_vocab_size(),
        joint_vocab=tokenizers["source"] == tokenizers["target"],
        pad_id=PAD_ID,
    )
    if pretrained and not cfg.get("ckpt_path"):
        load_pretrained_embeddings(model, cfg.model.get("pretrained_embeddings"), tokenizers)
    scheduler = cfg.get("scheduler")
    return Seq2SeqModule(
        model=model,
        teacher_forcing=instantiate(cfg.teacher_forcing),
        decoding=instantiate(cfg.decoding),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(scheduler) if scheduler else None,
        tokenizers=tokenizers,
        config=config,
    )


def load_trained(ckpt_path: str | Path, decoding: DictConfig | None = None) -> tuple[dict[str, Any], DictConfig]:
    """Read a checkpoint and its run config, with ``decoding`` (checked before the file is read) in place of its own."""
    if decoding:
        instantiate(decoding)  # bad decoding parameters fail here, before any model is loaded
    checkpoint = load_checkpoint(ckpt_path)
    trained = OmegaConf.create(checkpoint[CHECKPOINT_KEY]["config"])
    if decoding:
        trained.decoding = decoding
    return checkpoint, trained


def restore_module(checkpoint: dict[str, Any], trained: DictConfig) -> Seq2SeqModule:
    """Rebuild the LightningModule of ``checkpoint`` from the run config ``trained`` and load its weights."""
    saved = checkpoint[CHECKPOINT_KEY]
    module = build_module(trained, saved["tokenizers"], config=saved["config"], pretrained=False)
    module.load_state_dict(checkpoint["state_dict"])
    return module


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


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` (tensors or numbers) to ``path`` as JSON with plain floats, sorted by name."""
    values = {
        name: float(value) if isinstance(value, torch.Tensor | int | float) else value
        for name, value in metrics.items()
    }
    path.write_text(json.dumps(dict(sorted(values.items())), indent=2) + "\n")
