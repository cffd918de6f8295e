"""An exponential moving average of the weights for validation, checkpoints and test (off unless a decay is given)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from seq2seq import compat
from seq2seq.errors import ConfigError


def warmed_up_decay(decay: float, updates: torch.Tensor) -> torch.Tensor:
    """The decay of the update after ``updates`` earlier ones: ``min(decay, (1 + n) / (10 + n))``.

    As TensorFlow's ``ExponentialMovingAverage(num_updates=…)``: with a fixed decay of 0.999 the average would still
    be 37 % random initial weights after 1,000 steps; warmed up, the early average follows the weights closely and
    the decay reaches ``decay`` after about ``10 / (1 - decay)`` steps. A tensor on the weights' device, so the
    update never waits for the device.
    """
    steps = updates.to(torch.float32)
    return torch.clamp((1 + steps) / (10 + steps), max=decay)


def ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """A ``multi_avg_fn`` for `torch.optim.swa_utils.AveragedModel`: EMA with the warmed-up decay, foreach kernels."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # integer buffers (counters) follow the model
            compat.foreach_copy_(averaged, current)
            return
        weight = warmed_up_decay(decay, updates)
        compat.foreach_mul_(averaged, weight)
        compat.foreach_add_(averaged, compat.foreach_mul(current, 1 - weight))

    return update


class ExponentialMovingAverage(WeightAveraging):
    """Lightning's `WeightAveraging`, confined to fitting: ``trainer.validate``/``test`` after ``fit`` score the
    weights they load.

    Lightning's callback keeps its averaged model after ``fit``, so a later ``trainer.test(ckpt_path=best)`` would
    load the checkpoint's raw weights (``current_model_state``) into the module, and a later ``validate`` would swap
    in the last average instead of the checkpoint's. Outside fitting this callback does nothing, and a checkpoint's
    ``state_dict`` (the average it was saved with) is what is scored, as ``eval.py`` scores it.
    """

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # resuming: the raw weights train on, the average goes on
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # swap the average in for validation
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # and the raw weights back
            super().on_validation_epoch_end(trainer, pl_module)


def ema(decay: float | None = None) -> ExponentialMovingAverage | None:
    """Lightning's `WeightAveraging` with an EMA of decay ``decay`` after every optimizer step, or ``None`` (off).

    The decay is warmed up (`warmed_up_decay`). Validation runs on the averaged weights, checkpoints store them as
    ``state_dict`` (so ``best.ckpt``, ``eval.py`` and ``translate.py`` use them; the raw weights and the update
    count travel as ``current_model_state`` and ``averaging_state`` for resuming), and after fitting the model holds
    them; the final val/test of ``train.py`` score the average stored in ``best.ckpt`` (`ExponentialMovingAverage`).

    Args:
        decay: the weight of the old average at each update, in (0, 1), e.g. 0.999; ``None`` disables averaging.
    """
    if decay is None:
        return None
    if isinstance(decay, bool) or not isinstance(decay, float | int) or not 0 < decay < 1:
        raise ConfigError(f"callbacks.ema.decay={decay!r}: use a number in (0, 1) such as 0.999, or null (off)")
    return ExponentialMovingAverage(multi_avg_fn=ema_update(float(decay)))
