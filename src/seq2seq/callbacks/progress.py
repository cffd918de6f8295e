"""Progress a person can read: target tokens per second, and one line per validation."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger("seq2seq")


class _Span:
    """Target tokens and training seconds counted since a point (a log step, a validation)."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0

    def rate(self) -> float:
        """Tokens per second (0 before any time was counted)."""
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class ProgressLog(Callback):
    """Log ``train/tokens_per_sec`` (progress bar and loggers) and one readable line at each validation.

    The line (``epoch 3 | step 1200 | train loss 2.314 | val loss 2.105 | val bleu 25.31 | 12,345 tok/s |
    0:05:12``) goes through the ``seq2seq`` logger, so it reaches the terminal and the run's ``train.log`` even when
    the output is piped to a file or a SLURM log, where no progress bar is drawn.

    Tokens are counted on the CPU (``Batch.num_tokens``) and the train loss is summed on the device, so nothing
    here waits for the device during a step. The rate is logged at the global steps where Lightning writes
    ``train/loss`` (every ``trainer.log_every_n_steps`` optimizer steps), over the training time since the previous
    one, across epoch ends; validation and the time between epochs are not counted (a plain float, so the progress
    bar shows it without a device round trip).

    Args:
        metrics: the validation metrics shown in the line, when they were logged.
    """

    def __init__(self, metrics: tuple[str, ...] = ("val/loss", "val/bleu")) -> None:
        self.metrics = tuple(metrics)
        self._fit_start = time.perf_counter()
        self._clock: float | None = None  # when the training time now running started; None while paused
        self._last_step = -1
        self._window = _Span()  # since the last logged rate
        self._reset_since_validation()

    def _reset_since_validation(self) -> None:
        self._since_validation = _Span()
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    def _count_time(self, running: bool) -> None:
        """Add the training time since the last call to both spans; keep the clock ``running`` or pause it."""
        now = time.perf_counter()
        if self._clock is not None:
            self._window.seconds += now - self._clock
            self._since_validation.seconds += now - self._clock
        self._clock = now if running else None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_step = trainer.global_step  # a resumed run's, once its checkpoint is restored

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._count_time(running=True)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._count_time(running=False)  # the time between epochs is not training time

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._count_time(running=True)
        tokens = int(getattr(batch, "num_tokens", 0))
        self._window.tokens += tokens
        self._since_validation.tokens += tokens
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().float() * trainer.accumulate_grad_batches  # Lightning hands back the loss / K
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss  # stays on the device
            self._loss_count += 1
        stepped, self._last_step = trainer.global_step != self._last_step, trainer.global_step
        # Lightning writes step metrics after an optimizer step whose count is a multiple of log_every_n_steps
        every = trainer.log_every_n_steps
        if stepped and every > 0 and (trainer.global_step % every == 0 or trainer.should_stop):
            pl_module.log("train/tokens_per_sec", self._window.rate(), prog_bar=True, batch_size=1)
            self._window = _Span()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._count_time(running=False)  # validation time is not training time

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if trainer.is_global_zero:
            log.info(self.line(trainer))
        self._reset_since_validation()
        self._count_time(running=True)  # training goes on (an epoch's end pauses the clock again)

    def line(self, trainer: Trainer) -> str:
        """This validation's progress line (validation syncs anyway, so reading the loss here costs nothing)."""
        parts = [f"epoch {trainer.current_epoch}", f"step {trainer.global_step}"]
        if self._loss_count:
            parts.append(f"train loss {float(self._loss_sum) / self._loss_count:.3f}")
        for name in self.metrics:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                parts.append(f"{name.replace('/', ' ')} {float(value):.{2 if 'bleu' in name else 3}f}")
        if self._since_validation.tokens and self._since_validation.seconds > 0:
            parts.append(f"{self._since_validation.rate():,.0f} tok/s")
        parts.append(f"elapsed {timedelta(seconds=round(time.perf_counter() - self._fit_start))}")
        return " | ".join(parts)
