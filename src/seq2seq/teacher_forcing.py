"""Teacher-forcing ratio schedules: the probability of feeding the gold token at each decoder step.

Each schedule is a callable ``schedule(step, epoch) -> ratio in [0, 1]`` that counts time ``t`` in
optimizer steps or in epochs (``unit``). Formulas follow Bengio et al. (2015), "Scheduled Sampling".
"""

from __future__ import annotations

import math

from seq2seq.errors import ConfigError

UNITS = ("step", "epoch")
MODES = ("exact", "parallel")


def check_mode(mode: str) -> None:
    """Raise a `ConfigError` unless ``mode`` is a teacher-forcing mode (``exact`` or ``parallel``)."""
    if mode not in MODES:
        raise ConfigError(f"unknown teacher_forcing.mode {mode!r}: use exact or parallel")


class Schedule:
    """Base class: picks the time unit, clamps the ratio to [0, 1] and says how a ratio < 1 is applied.

    ``mode="exact"`` steps the decoder through time, feeding its own argmax; ``mode="parallel"`` is the faster
    two-pass approximation (see `Seq2Seq.forward`).
    """

    def __init__(self, unit: str = "step", mode: str = "exact") -> None:
        if unit not in UNITS:
            raise ConfigError(f"unknown teacher_forcing.unit {unit!r}: use step or epoch")
        check_mode(mode)
        self.unit = unit
        self.mode = mode

    def __call__(self, step: int, epoch: int) -> float:
        t = step if self.unit == "step" else epoch
        return min(1.0, max(0.0, self.ratio(t)))

    def ratio(self, t: int) -> float:
        """The ratio at time ``t`` (steps or epochs)."""
        raise NotImplementedError


class ConstantSchedule(Schedule):
    """``ratio`` at every step."""

    def __init__(self, ratio: float = 1.0, unit: str = "step", mode: str = "exact") -> None:
        super().__init__(unit, mode)
        self.value = ratio

    def ratio(self, t: int) -> float:
        return self.value


class LinearSchedule(Schedule):
    """From ``start`` to ``end`` in a straight line over ``duration`` units, then ``end``."""

    def __init__(
        self, start: float = 1.0, end: float = 0.0, duration: int = 10_000, unit: str = "step", mode: str = "exact"
    ) -> None:
        super().__init__(unit, mode)
        if duration <= 0:
            raise ConfigError(f"teacher_forcing.duration must be > 0, got {duration}")
        self.start, self.end, self.duration = start, end, duration

    def ratio(self, t: int) -> float:
        return self.start + (self.end - self.start) * min(t / self.duration, 1.0)


class ExponentialSchedule(Schedule):
    """``max(end, start · decay^t)`` with ``0 < decay < 1``."""

    def __init__(
        self, start: float = 1.0, end: float = 0.0, decay: float = 0.999, unit: str = "step", mode: str = "exact"
    ) -> None:
        super().__init__(unit, mode)
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"teacher_forcing.decay must be in (0, 1) for the exponential schedule, got {decay}")
        self.start, self.end, self.decay = start, end, decay

    def ratio(self, t: int) -> float:
        return max(self.end, self.start * self.decay**t)


class InverseSigmoidSchedule(Schedule):
    """``end + (start - end) · k / (k + exp(t / k))`` with ``k >= 1`` (``decay``): slow, fast, slow."""

    def __init__(
        self, start: float = 1.0, end: float = 0.0, decay: float = 1000.0, unit: str = "step", mode: str = "exact"
    ) -> None:
        super().__init__(unit, mode)
        if decay < 1.0:
            raise ConfigError(f"teacher_forcing.decay must be >= 1 for the inverse_sigmoid schedule, got {decay}")
        self.start, self.end, self.k = start, end, decay

    def ratio(self, t: int) -> float:
        exponent = min(t / self.k, 700.0)  # exp overflows past ~709
        return self.end + (self.start - self.end) * self.k / (self.k + math.exp(exponent))
