"""Early stopping on the checkpoint's monitored metric, off unless a patience is given."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping

from seq2seq.errors import ConfigError
from seq2seq.utils.run_metrics import metric_mode


def early_stopping(
    patience: int | None = None, monitor: str | None = None, mode: str | None = None, **settings: Any
) -> EarlyStopping | None:
    """Lightning's `EarlyStopping` when ``patience`` is set (validations without improvement), else ``None`` (off).

    Args:
        patience: stop after this many validations without improvement of ``monitor``; ``None`` disables it.
        monitor: the metric (the checkpoint's, ``optimized_metric``).
        mode: ``min`` or ``max``; ``None`` = by the metric's name, as for the best checkpoint.
        settings: `EarlyStopping`'s other arguments (``min_delta``, …).
    """
    if patience is None:
        return None
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ConfigError(f"callbacks.early_stopping.patience={patience!r}: use a whole number >= 1, or null (off)")
    return EarlyStopping(monitor=monitor, mode=mode or metric_mode(monitor), patience=patience, **settings)
