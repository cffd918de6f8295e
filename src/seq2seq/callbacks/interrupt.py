"""Stop on Ctrl-C or SIGTERM with a checkpoint to resume from; never overwrite it after a crash."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger("seq2seq")


class CheckpointOnInterrupt(Callback):
    """On Ctrl-C (SIGINT) or SIGTERM (what SLURM sends before it preempts or times out a job), finish the current
    training step, save ``dirpath/filename.ckpt`` and stop; ``python src/train.py ckpt_path=<that file>`` resumes
    exactly there.

    Any other exception (a crash, a NaN check, an out-of-memory error) leaves the file alone: it stops in the middle
    of a step, and the checkpoint written at the last validation (or ``every_n_train_steps``) is the one to resume
    from. A second Ctrl-C stops at once, without saving.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the end of the step; this callback saves the step's
    checkpoint just before. A SIGTERM during validation stops after it, with the epoch's ``last.ckpt``; a Ctrl-C
    then stops after the validation and one more step.

    Args:
        dirpath: where the checkpoint goes (the run's ``checkpoints/``).
        filename: its name without ``.ckpt``; ``last`` replaces ModelCheckpoint's ``last.ckpt``.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._interrupted = False  # Ctrl-C was pressed; stop after this step
        self._previous_handler: Any = None
        self._saved_step: int | None = None  # global step of the latest checkpoint written during this fit

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._interrupted = False
        self._saved_step = None
        # only the main thread can handle signals; a process started in the background ignores SIGINT: leave it so
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        ):
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._interrupted:  # pressed again: stop now
            raise KeyboardInterrupt
        self._interrupted = True
        log.warning("Ctrl-C: stopping after this training step (press again to stop at once, without a checkpoint)")

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._saved_step = trainer.global_step  # any checkpoint: this one's, or ModelCheckpoint's last.ckpt

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # the step is complete: the one point where a checkpoint resumes exactly (ModelCheckpoint saves here too)
        stop = self._interrupted or trainer.received_sigterm
        if trainer.world_size > 1:  # saving is collective: every rank saves and stops at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        trainer.save_checkpoint(self.path)
        if not trainer.received_sigterm:
            raise KeyboardInterrupt  # Lightning stops the run (exit code 1); after a SIGTERM it stops after this hook

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit":
            return
        saved = self._saved_step == trainer.global_step
        if isinstance(exception, SIGTERMException) and not saved:  # it came during an epoch's last validation
            trainer.save_checkpoint(self.path)
            saved = True
        if not trainer.is_global_zero:
            return
        if saved and isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            log.warning("stopped at step %d; resume with ckpt_path=%s", trainer.global_step, self.path)
        else:
            log.warning(
                "training stopped in the middle of step %d (%s): no checkpoint written; %s is the one of the last "
                "validation or every_n_train_steps",
                trainer.global_step + 1,
                type(exception).__name__,
                self.path,
            )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None
