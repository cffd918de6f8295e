"""Progress a person can read: target tokens per second, and one line per validation."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger("seq2seq")


class ProgressLog(Callback):
    """Log ``train/tokens_per_sec`` (progress bar and loggers) and one readable line at each validation.

    The line (``epoch 3 | step 1200 | train loss 2.314 | val loss 2.105 | val bleu 25.31 | 12,345 tok/s |
    0:05:12``) goes through the ``seq2seq`` logger, so it reaches the terminal and the run's ``train.log`` even when
    the output is piped to a file or a SLURM log, where no progress bar is drawn.

    Tokens are counted on the CPU (``Batch.num_tokens``) and the train loss is summed on the device, so nothing
    here waits for the device during a step; the rate is logged every ``trainer.log_every_n_steps`` batches (a
    plain float, so the progress bar shows it without a device round trip).

    Args:
        metrics: the validation metrics shown in the line, when they were logged.
    """

    def __init__(self, metrics: tuple[str, ...] = ("val/loss", "val/bleu")) -> None:
        self.metrics = tuple(metrics)
        self._fit_start = time.perf_counter()
        self._reset_window()
        self._reset_since_validation()

    def _reset_window(self) -> None:
        self._window_start = time.perf_counter()
        self._window_tokens = 0
        self._window_batches = 0

    def _reset_since_validation(self) -> None:
        self._train_seconds = 0.0
        self._train_tokens = 0
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    def _flush_window(self) -> float:
        """Move the window's tokens and time to the totals since the last validation; return its rate."""
        elapsed = time.perf_counter() - self._window_start
        self._train_seconds += elapsed
        self._train_tokens += self._window_tokens
        rate = self._window_tokens / elapsed if elapsed > 0 else 0.0
        self._reset_window()
        return rate

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset_window()  # the time between epochs is not training time

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._window_tokens += int(getattr(batch, "num_tokens", 0))
        self._window_batches += 1
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().float() * trainer.accumulate_grad_batches  # Lightning hands back the loss / K
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss  # stays on the device
            self._loss_count += 1
        if self._window_batches >= max(1, trainer.log_every_n_steps):
            pl_module.log("train/tokens_per_sec", self._flush_window(), prog_bar=True, batch_size=1)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._flush_window()  # validation time is not training time

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if trainer.is_global_zero:
            log.info(self.line(trainer))
        self._reset_since_validation()
        self._reset_window()

    def line(self, trainer: Trainer) -> str:
        """This validation's progress line (validation syncs anyway, so reading the loss here costs nothing)."""
        parts = [f"epoch {trainer.current_epoch}", f"step {trainer.global_step}"]
        if self._loss_count:
            parts.append(f"train loss {float(self._loss_sum) / self._loss_count:.3f}")
        for name in self.metrics:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                parts.append(f"{name.replace('/', ' ')} {float(value):.{2 if 'bleu' in name else 3}f}")
        if self._train_tokens and self._train_seconds > 0:
            parts.append(f"{self._train_tokens / self._train_seconds:,.0f} tok/s")
        parts.append(f"elapsed {timedelta(seconds=round(time.perf_counter() - self._fit_start))}")
        return " | ".join(parts)
