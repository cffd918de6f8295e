"""Models from a config or from checkpoints: build the LightningModule, restore one, restore an ensemble.

`seq2seq.checkpoint` reads a checkpoint and checks it (format, allow-list); this module turns what it returns into
a `Seq2SeqModule` with its weights. `load_ensemble` and `restore_ensemble` do the same for several checkpoints
(each verified alike) that share their vocabularies, decoded as one `seq2seq.decoding.Ensemble`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from seq2seq.checkpoint import (
    CHECKPOINT_KEY,
    check_same_vocabularies,
    load_checkpoint,
    verify_config,
    verify_decoding,
)
from seq2seq.data.tokenizers import PAD_ID, tokenizer_from_str
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.errors import ConfigError
from seq2seq.lit_module import Seq2SeqModule
from seq2seq.modules.embeddings import load_pretrained_embeddings
from seq2seq.schedulers import lr_schedule


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
        verify_decoding(decoding)
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


def restore_ensemble(members: Sequence[tuple[dict[str, Any], DictConfig]]) -> Seq2SeqModule:
    """The LightningModule of the first checkpoint, its model replaced by the `Ensemble` of all (`load_ensemble`'s
    output); a single checkpoint is restored as it is, with its own model.

    The first checkpoint's config (data, decoding, tokenizers) is the module's: the others share its vocabularies.
    """
    modules = [restore_module(checkpoint, trained) for checkpoint, trained in members]
    if len(modules) > 1:
        modules[0].model = Ensemble([module.model for module in modules])
    return modules[0]
