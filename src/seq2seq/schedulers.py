"""Learning-rate schedules and how Lightning steps them (the ``scheduler=`` config group).

A ``conf/scheduler/*.yaml`` option is a torch scheduler's ``_target_`` and arguments plus the keys that say how
Lightning steps it: ``interval`` (``step``: after every optimizer step, ``epoch``: after every epoch), ``monitor``
(the metric a `ReduceLROnPlateau` reads) and ``run_length_arg`` (the argument that receives the run's length when
it is null: all optimizer steps of the run for ``interval: step``, ``trainer.max_epochs`` for ``epoch``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from seq2seq.errors import ConfigError

INTERVALS = ("step", "epoch")
# keys of a scheduler config that Lightning reads rather than the scheduler's constructor
STEPPING_KEYS = ("interval", "monitor", "run_length_arg")


class InverseSqrtLR(LRScheduler):
    """Linear warm-up to the base LR over ``warmup_steps`` steps, then decay with ``1/sqrt(step)``.

    Vaswani et al. (2017), eq. 3, scaled so that the peak is the optimizer's LR: at step ``n`` (1-based, the step
    about to be taken) the LR is ``lr * min(n / w, sqrt(w / n))`` with ``w = max(warmup_steps, 1)``.

    Args:
        optimizer: the wrapped optimizer.
        warmup_steps: steps of linear warm-up (0: start at the full LR and decay at once).
        last_epoch: the index of the last step taken (-1: a new run).
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 4000, last_epoch: int = -1) -> None:
        if warmup_steps < 0:
            raise ConfigError(f"scheduler.warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The LR multiplier for the step after ``step`` steps have been taken."""
        n, w = step + 1, max(self.warmup_steps, 1)
        return min(n / w, math.sqrt(w / n))

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]


class LinearWarmupDecayLR(LRScheduler):
    """Linear warm-up to the base LR over ``warmup_steps`` steps, then linear decay to 0 at ``total_steps``.

    At step ``s`` (0-based, the steps taken so far) the multiplier is ``(s + 1) / warmup_steps`` during warm-up and
    ``(total_steps - s) / (total_steps - warmup_steps)`` after it, so the last step of the run has the smallest
    non-zero LR.

    Args:
        optimizer: the wrapped optimizer.
        warmup_steps: steps of linear warm-up (0: start at the full LR).
        total_steps: the run's optimizer steps (null in the config: Lightning's estimate for the run).
        last_epoch: the index of the last step taken (-1: a new run).
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, last_epoch: int = -1) -> None:
        if warmup_steps < 0 or total_steps < 1:
            raise ConfigError(
                f"scheduler.warmup_steps must be >= 0 and the run's total steps >= 1, got {warmup_steps}, {total_steps}"
            )
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The LR multiplier for the step after ``step`` steps have been taken."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return max(0.0, (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1))

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]


@dataclass
class LRSchedule:
    """A scheduler factory and how Lightning steps the scheduler it makes.

    Args:
        factory: a partial taking the optimizer (and, if ``run_length_arg`` is set, the run's length).
        interval: ``step`` or ``epoch``.
        monitor: the logged metric passed to the scheduler's ``step`` (`ReduceLROnPlateau`); None for others.
        run_length_arg: the factory argument filled with the run's length in ``interval`` units when it is null.
    """

    factory: Callable[..., Any]
    interval: str = "epoch"
    monitor: str | None = None
    run_length_arg: str | None = None

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ConfigError(f"scheduler.interval={self.interval!r} is not valid: use step or epoch")

    def lightning_config(self, optimizer: Optimizer, trainer: Any) -> dict[str, Any]:
        """Build the scheduler for ``optimizer`` and return Lightning's ``lr_scheduler`` dict for it."""
        kwargs = {}
        if self.run_length_arg and getattr(self.factory, "keywords", {}).get(self.run_length_arg) is None:
            kwargs[self.run_length_arg] = run_length(trainer, self.interval)
        config = {"scheduler": self.factory(optimizer, **kwargs), "interval": self.interval}
        if self.monitor:
            config["monitor"] = self.monitor
        return config


def run_length(trainer: Any, interval: str) -> int:
    """The run's length in ``interval`` units: optimizer steps (Lightning's estimate) or ``trainer.max_epochs``."""
    length = trainer.estimated_stepping_batches if interval == "step" else trainer.max_epochs
    if length is None or length < 1 or math.isinf(length):
        raise ConfigError(
            "this scheduler needs the run's length: set trainer.max_epochs (or trainer.max_steps) to a bounded value"
        )
    return int(length)


def lr_schedule(cfg: DictConfig | dict | None) -> LRSchedule | None:
    """The `LRSchedule` of a ``scheduler`` config; None for ``scheduler=none`` (a recipe's leftover options aside).

    Raises:
        ConfigError: an option the scheduler's constructor does not take (e.g. a recipe's ``gamma`` after
            ``scheduler=cosine``), caught here rather than when training starts.
    """
    if not cfg or "_target_" not in cfg:
        return None
    options = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    stepping = {key: options.pop(key) for key in STEPPING_KEYS if key in options}
    factory = instantiate(options, _partial_=True)
    accepted = inspect.signature(factory.func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        for name in factory.keywords:
            if name not in accepted:
                options_list = ", ".join(p for p in accepted if p not in ("self", "optimizer", "last_epoch", "verbose"))
                raise ConfigError(
                    f"scheduler.{name} is not an option of {options['_target_']} ({options_list}): "
                    f"pass ~scheduler.{name} to drop it"
                )
    return LRSchedule(factory=factory, **stepping)
