"""A table of sample predictions (source / reference / hypothesis) at each validation and test."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from seq2seq.utils.tables import markdown_table

COLUMNS = ["source", "reference", "hypothesis"]


class PredictionsTable(Callback):
    """Log the first ``num_samples`` predictions of each validation (``val/predictions``) and test
    (``test/predictions``) epoch: a table in W&B, a markdown table as text in TensorBoard.

    Reads ``pl_module.predictions`` before the module puts them in order (under DDP, before it gathers them: rank 0's
    share, a sample all the same) and logs the first in input order; skips the sanity check.

    Args:
        num_samples: rows per table.
    """

    def __init__(self, num_samples: int = 20) -> None:
        self.num_samples = num_samples

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, pl_module, "val/predictions")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(trainer, pl_module, "test/predictions")

    def _log(self, trainer: Trainer, pl_module: LightningModule, key: str) -> None:
        first = sorted(pl_module.predictions, key=lambda prediction: prediction.index)[: self.num_samples]
        rows = [[prediction.source, prediction.reference, prediction.hypothesis] for prediction in first]
        if not rows or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key, columns=COLUMNS, data=rows, step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text(key, markdown_table(COLUMNS, rows), global_step=trainer.global_step)
