"""The one check before a run reads any data: a table of keys and the values each accepts, the settings that
span keys (decoding, teacher forcing, LR schedule), the embedding settings and their vector files, and DDP inside
a local sweep."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seq2seq.callbacks.launchers import is_slurm
from seq2seq.data.word_vectors import check_vector_size, vector_size
from seq2seq.errors import ConfigError
from seq2seq.modules.embeddings import TIE_MODES, check_joint, pretrained_paths
from seq2seq.schedulers import INTERVALS, lr_schedule


@dataclass(frozen=True)
class Valid:
    """The values a key accepts: ``expected`` says which (for the error), ``accepts`` tests one."""

    expected: str
    accepts: Callable[[Any], bool]


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def optional(valid: Valid) -> Valid:
    """``valid`` or null."""
    return Valid(f"null or {valid.expected}", lambda value: value is None or valid.accepts(value))


POSITIVE_INT = Valid("an integer >= 1", lambda v: _integer(v) and v >= 1)
NON_NEGATIVE_INT = Valid("an integer >= 0", lambda v: _integer(v) and v >= 0)
POSITIVE = Valid("a number > 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE = Valid("a number >= 0", lambda v: _number(v) and v >= 0)
PROBABILITY = Valid("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
FRACTION_BELOW_ONE = Valid("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1)
OPEN_UNIT = Valid("a number in (0, 1)", lambda v: _number(v) and 0 < v < 1)
TOP_P = Valid("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1)
EPOCHS = Valid("an integer >= 1, or -1 for no limit", lambda v: _integer(v) and (v >= 1 or v == -1))
INTERVAL = Valid(" or ".join(INTERVALS), lambda v: v in INTERVALS)

# Keys that are absent in the chosen options (e.g. decoding.top_p under decoding=beam) are skipped.
CHECKS: dict[str, Valid] = {
    "optimizer.lr": POSITIVE,
    "optimizer.weight_decay": NON_NEGATIVE,
    "model.embedding_dim": POSITIVE_INT,
    "model.hidden_size": POSITIVE_INT,
    "model.num_layers": POSITIVE_INT,
    "model.dropout": FRACTION_BELOW_ONE,
    "model.label_smoothing": FRACTION_BELOW_ONE,
    "model.decoder_hidden_size": optional(POSITIVE_INT),
    "model.decoder_num_layers": optional(POSITIVE_INT),
    "attention.size": optional(POSITIVE_INT),
    "data.batch_size": POSITIVE_INT,
    "data.max_length": POSITIVE_INT,
    "data.vocab_size": POSITIVE_INT,
    "data.min_freq": NON_NEGATIVE_INT,
    "data.num_workers": NON_NEGATIVE_INT,
    "trainer.max_epochs": optional(EPOCHS),
    "trainer.max_steps": EPOCHS,
    "trainer.gradient_clip_val": optional(NON_NEGATIVE),
    "trainer.accumulate_grad_batches": POSITIVE_INT,
    "trainer.check_val_every_n_epoch": optional(POSITIVE_INT),
    "teacher_forcing.ratio": PROBABILITY,
    "teacher_forcing.start": PROBABILITY,
    "teacher_forcing.end": PROBABILITY,
    "teacher_forcing.decay": POSITIVE,
    "teacher_forcing.duration": POSITIVE,
    "decoding.beam_size": POSITIVE_INT,
    "decoding.nbest": POSITIVE_INT,
    "decoding.max_length": POSITIVE_INT,
    "decoding.max_length_ratio": optional(POSITIVE),
    "decoding.min_length": NON_NEGATIVE_INT,
    "decoding.length_penalty": NON_NEGATIVE,
    "decoding.no_repeat_ngram_size": NON_NEGATIVE_INT,
    "decoding.temperature": POSITIVE,
    "decoding.top_k": NON_NEGATIVE_INT,
    "decoding.top_p": TOP_P,
    "scheduler.interval": INTERVAL,
    "scheduler.warmup_steps": NON_NEGATIVE_INT,
    "scheduler.total_steps": optional(POSITIVE_INT),
    "scheduler.gamma": POSITIVE,
    "scheduler.factor": OPEN_UNIT,
    "scheduler.patience": NON_NEGATIVE_INT,
    "scheduler.min_lr": NON_NEGATIVE,
    "scheduler.T_max": optional(POSITIVE_INT),
    "scheduler.eta_min": NON_NEGATIVE,
    "callbacks.early_stopping.patience": optional(POSITIVE_INT),
    "callbacks.ema.decay": optional(OPEN_UNIT),
}

_ABSENT = object()


def check_hyperparameters(cfg: DictConfig) -> None:
    """Raise a `ConfigError` naming the first key of `CHECKS` whose value is out of range or of the wrong type.

    Then build the teacher-forcing schedule, the decoding strategy and the LR schedule (all cheap), so that their
    own checks across keys (e.g. ``decoding.nbest <= decoding.beam_size``) also run before any data is read; then
    `check_sweep_strategy` and `check_embedding_settings` (resuming when ``ckpt_path`` is set).
    """
    for key, valid in CHECKS.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not valid.accepts(value):
            raise ConfigError(f"{key}={value!r} is not valid: use {valid.expected}")
    try:
        instantiate(cfg.teacher_forcing)
        instantiate(cfg.decoding)
    except InstantiationException as exception:
        if isinstance(exception.__cause__, ConfigError):
            raise exception.__cause__ from None
        raise
    lr_schedule(cfg.get("scheduler"))
    check_sweep_strategy(cfg.trainer)
    check_embedding_settings(cfg.model, cfg.data, resuming=bool(cfg.get("ckpt_path")))


def check_sweep_strategy(trainer: Mapping[str, Any]) -> None:
    """Refuse multi-process DDP in a job of a local multirun: Lightning starts the other ranks by running the
    script's command line again, which would start the whole sweep again (SLURM starts the ranks itself)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    strategy = str(trainer.get("strategy") or "")
    relaunches = strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork", "notebook"))
    several = str(trainer.get("devices")) != "1" or int(trainer.get("num_nodes") or 1) > 1
    if relaunches and several and not is_slurm(HydraConfig.get().launcher):
        raise ConfigError(
            f"trainer.strategy={strategy} with several processes cannot run inside a local multirun (-m): train each "
            "configuration as its own run, or sweep on a cluster with hydra/launcher=submitit_slurm"
        )


def check_embedding_settings(model: Mapping[str, Any], data: Mapping[str, Any], resuming: bool = False) -> None:
    """``model.tie_embeddings`` is known and ``all`` has a joint vocabulary, the vector files of
    ``model.pretrained_embeddings`` exist and their size is ``model.embedding_dim`` (when resuming, the weights
    come from the checkpoint, so only the mode is checked)."""
    mode = model.get("tie_embeddings", "none")
    if mode not in TIE_MODES:
        raise ConfigError(f"unknown model.tie_embeddings={mode!r}: use none, decoder or all")
    if mode == "all" and not resuming:
        check_joint(bool(data.get("joint_vocab")))
    paths = pretrained_paths(model.get("pretrained_embeddings"))
    if not resuming:
        for path in paths.values():
            check_vector_size(path, vector_size(path), int(model.get("embedding_dim")))
