"""Early stopping on the checkpoint's monitored metric, off unless a patience is given."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping

from seq2seq.errors import ConfigError


def early_stopping(patience: int | None = None, **settings: Any) -> EarlyStopping | None:
    """Lightning's `EarlyStopping` when ``patience`` is set (validations without improvement), else ``None`` (off).

    Args:
        patience: stop after this many validations without improvement of ``monitor``; ``None`` disables it.
        settings: `EarlyStopping`'s other arguments (``monitor``, ``mode``, ``min_delta``, …).
    """
    if patience is None:
        return None
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ConfigError(f"callbacks.early_stopping.patience={patience!r}: use a whole number >= 1, or null (off)")
    return EarlyStopping(patience=patience, **settings)
