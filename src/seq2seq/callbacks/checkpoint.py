"""The run's two checkpoints: ``best.ckpt`` (chosen at validation) and ``last.ckpt`` (to resume from)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from seq2seq import compat
from seq2seq.callbacks.summary import LOWER_IS_BETTER
from seq2seq.errors import ConfigError

log = logging.getLogger("seq2seq")


def metric_mode(monitor: str | None) -> str:
    """``min`` for a loss or perplexity (``val/loss``, ``val/ppl``), ``max`` for any other score."""
    return "min" if monitor and monitor.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


class BestAndLastCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, with ``last.ckpt`` kept current and the best score kept across a resume.

    - ``best.ckpt`` (the top ``save_top_k``) is chosen only at validation, by ``monitor``; ``mode=None`` follows the
      metric: ``min`` for loss and ppl, ``max`` otherwise.
    - ``last.ckpt`` is written after every validation (``ModelCheckpoint`` alone rewrites it only when the score
      improved) and, with ``every_n_train_steps=N``, every N training steps. ``ModelCheckpoint`` given
      ``every_n_train_steps`` would also choose ``best.ckpt`` mid-epoch by the last validation's stale score, stop
      choosing it at validation, and write nothing before the first validation of a run.
    - A resumed run writes into a new run dir; ``ModelCheckpoint`` then forgets the best score, and the first
      validation of the resumed run would win whatever its score. Here the best checkpoints of the run it resumes
      (those whose files still exist) stay in the ranking, so ``best_model_path`` is the true best, in either dir.

    Args:
        dirpath, filename, monitor: as ``ModelCheckpoint``'s.
        mode: ``min`` or ``max``; ``None`` = by the metric's name (see above).
        every_n_train_steps: also write ``last.ckpt`` every this many optimizer steps; ``None`` = at validation only.
        **kwargs: further ``ModelCheckpoint`` arguments (``save_top_k``, ``save_last``, …).
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        mode: str | None = None,
        every_n_train_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ConfigError(
                f"callbacks.model_checkpoint.every_n_train_steps={every_n_train_steps}: use a number of steps >= 1, "
                "or null to write last.ckpt at validation only"
            )
        # ModelCheckpoint's own triggers stay at their default, once per validation, for best.ckpt
        super().__init__(
            dirpath=dirpath, filename=filename, monitor=monitor, mode=mode or metric_mode(monitor), **kwargs
        )
        self.last_every_n_train_steps = every_n_train_steps or 0
        self._carried_over = False  # the best checkpoints of the run resumed from are in the ranking

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self.last_every_n_train_steps
        if not every or trainer.global_step % every or compat.checkpoint_should_skip(self, trainer):
            return
        saved_step = compat.checkpoint_last_saved_step(self)
        compat.checkpoint_save_last(self, trainer, compat.checkpoint_monitor_candidates(self, trainer))
        # only the step's last.ckpt: a validation at this same step must still rank the model for best.ckpt
        compat.set_checkpoint_last_saved_step(self, saved_step)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if compat.checkpoint_saves_on_train_epoch_end(self, trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not compat.checkpoint_saves_on_train_epoch_end(self, trainer):
            self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: Trainer) -> None:
        """Write ``last.ckpt`` unless a checkpoint of this step was just written (with ``last.ckpt`` along)."""
        if self.save_last and not compat.checkpoint_should_skip(self, trainer):
            compat.checkpoint_save_last(self, trainer, compat.checkpoint_monitor_candidates(self, trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        # Resumed into a new run dir: keep ranking the old run's best checkpoints (they are never deleted from there).
        kept = {path: score for path, score in (state_dict.get("best_k_models") or {}).items() if Path(path).is_file()}
        if not kept:
            return
        best, worst = (min, max) if self.mode == "min" else (max, min)
        self.best_k_models = kept
        self.best_model_path = best(kept, key=kept.get)
        self.best_model_score = kept[self.best_model_path]
        self.kth_best_model_path = worst(kept, key=kept.get)
        self.kth_value = kept[self.kth_best_model_path]
        self._carried_over = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._carried_over and trainer.is_global_zero:
            log.info("best checkpoint so far: %s (%s=%.6g)", self.best_model_path, self.monitor, self.best_model_score)
        self._carried_over = False
