"""An exponential moving average of the weights for validation, checkpoints and test (off unless a decay is given)."""

from __future__ import annotations

from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from seq2seq.errors import ConfigError


def ema(decay: float | None = None) -> WeightAveraging | None:
    """Lightning's `WeightAveraging` with an EMA of decay ``decay`` after every optimizer step, or ``None`` (off).

    Validation runs on the averaged weights, checkpoints store them as ``state_dict`` (so ``best.ckpt``,
    ``eval.py`` and ``translate.py`` use them; the raw weights travel as ``current_model_state`` for resuming),
    and after fitting the model holds them, so the final val/test score them.

    Args:
        decay: the weight of the old average at each update, in (0, 1), e.g. 0.999; ``None`` disables averaging.
    """
    if decay is None:
        return None
    if isinstance(decay, bool) or not isinstance(decay, float | int) or not 0 < decay < 1:
        raise ConfigError(f"callbacks.ema.decay={decay!r}: use a number in (0, 1) such as 0.999, or null (off)")
    return WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(float(decay)))
