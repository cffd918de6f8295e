"""Keep a resumable checkpoint when training stops early."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger("seq2seq")


class CheckpointOnInterrupt(Callback):
    """Save ``dirpath/filename.ckpt`` when fitting stops on Ctrl-C or an exception.

    Unlike Lightning's ``OnExceptionCheckpoint``, the file is kept after the run ends, so
    ``python src/train.py ckpt_path=<run>/checkpoints/last.ckpt`` resumes from where it stopped.
    """

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning("training stopped (%s); resume with ckpt_path=%s", type(exception).__name__, self.path)
