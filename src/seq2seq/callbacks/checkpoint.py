"""The run's checkpoints: ``best.ckpt`` (chosen at validation), ``last.ckpt`` (to resume from) and, on request, the
last N epochs' ``epoch_NNN.ckpt`` (to average)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from seq2seq import compat
from seq2seq.errors import ConfigError
from seq2seq.utils.run_metrics import metric_mode

log = logging.getLogger("seq2seq")
# an epoch-end checkpoint, NNN the 0-based epoch as in Lightning's "epoch" key (no "=" in the name: Hydra would want the
# path quoted on the command line)
EPOCH_FILE = re.compile(r"epoch_(\d+)\.ckpt")


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
    - ``keep_last=N`` also writes ``epoch_NNN.ckpt`` at the end of every training epoch (``NNN`` the 0-based epoch, as
      in Lightning's ``epoch`` key and the progress line) and deletes the older ones, so the last N epochs are there
      to average with ``average.py``. A resumed run counts the epoch files of the run it resumes (deleting none of
      them) and, at its end, logs the last N of both dirs as an ``average.py`` command.

    Args:
        dirpath, filename, monitor: as ``ModelCheckpoint``'s.
        mode: ``min`` or ``max``; ``None`` = by the metric's name (see above).
        every_n_train_steps: also write ``last.ckpt`` every this many optimizer steps; ``None`` = at validation only.
        keep_last: keep the last this many epoch-end checkpoints ``epoch_NNN.ckpt``; ``None`` = write none.
        **kwargs: further ``ModelCheckpoint`` arguments (``save_top_k``, ``save_last``, …).
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        mode: str | None = None,
        every_n_train_steps: int | None = None,
        keep_last: int | None = None,
        **kwargs: Any,
    ) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ConfigError(
                f"callbacks.model_checkpoint.every_n_train_steps={every_n_train_steps}: use a number of steps >= 1, "
                "or null to write last.ckpt at validation only"
            )
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise ConfigError(
                f"callbacks.model_checkpoint.keep_last={keep_last!r}: use a number of epoch checkpoints >= 1 "
                "(2 or more to average them), or null to keep none"
            )
        # ModelCheckpoint's own triggers stay at their default, once per validation, for best.ckpt
        super().__init__(
            dirpath=dirpath, filename=filename, monitor=monitor, mode=mode or metric_mode(monitor), **kwargs
        )
        self.last_every_n_train_steps = every_n_train_steps or 0
        self._carried_over = False  # the best checkpoints of the run resumed from are in the ranking
        self.keep_last = keep_last or 0
        self.epoch_checkpoints: dict[int, Path] = {}  # epoch -> its kept epoch_NNN.ckpt (this run's or the resumed)
        self._resumed_dirpath: str | None = None  # the checkpoint dir of the run resumed from, if another one

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
        if self.keep_last:
            self._save_epoch_checkpoint(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not compat.checkpoint_saves_on_train_epoch_end(self, trainer):
            self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: Trainer) -> None:
        """Write ``last.ckpt`` unless a checkpoint of this step was just written (with ``last.ckpt`` along)."""
        if self.save_last and not compat.checkpoint_should_skip(self, trainer):
            compat.checkpoint_save_last(self, trainer, compat.checkpoint_monitor_candidates(self, trainer))

    def _save_epoch_checkpoint(self, trainer: Trainer) -> None:
        """Write this epoch's ``epoch_NNN.ckpt`` and delete this dir's epoch files beyond the last ``keep_last``."""
        if trainer.fast_dev_run or trainer.sanity_checking or self.dirpath is None:
            return
        epoch = trainer.current_epoch  # the epoch that just ended
        path = Path(self.dirpath) / f"epoch_{epoch:03d}{self.FILE_EXTENSION}"
        trainer.save_checkpoint(path, self.save_weights_only)
        self.epoch_checkpoints[epoch] = path
        for old in sorted(self.epoch_checkpoints)[: -self.keep_last]:
            dropped = self.epoch_checkpoints.pop(old)
            if dropped.parent == Path(self.dirpath):  # never delete from the run resumed from
                trainer.strategy.remove_checkpoint(dropped)

    def _find_epoch_checkpoints(self) -> None:
        """Count the epoch files already there: the resumed run's, then this dir's (a later dir wins an epoch)."""
        self.epoch_checkpoints = {}
        for dirpath in (self._resumed_dirpath, self.dirpath):
            if dirpath is not None and Path(dirpath).is_dir():
                for path in Path(dirpath).iterdir():
                    if match := EPOCH_FILE.fullmatch(path.name):
                        self.epoch_checkpoints[int(match.group(1))] = path

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.keep_last and self.epoch_checkpoints and trainer.is_global_zero:
            kept = [str(self.epoch_checkpoints[epoch]) for epoch in sorted(self.epoch_checkpoints)][-self.keep_last :]
            log.info(
                "the last %d epoch checkpoints, to average: python src/average.py ckpt_paths=[%s]",
                len(kept),
                ",".join(kept),
            )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed_dirpath = state_dict.get("dirpath")
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
        if self.keep_last:
            self._find_epoch_checkpoints()
        if self._carried_over and trainer.is_global_zero:
            log.info("best checkpoint so far: %s (%s=%.6g)", self.best_model_path, self.monitor, self.best_model_score)
        self._carried_over = False
