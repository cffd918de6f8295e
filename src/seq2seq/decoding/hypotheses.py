"""What every search shares: the `Hypotheses` it returns, its length limits and how often it asks the device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# Steps between two looks at whether every sentence is done, on an accelerator: each look makes the host wait for
# the device, so the loops queue this many steps at a time; finished sentences only emit padding meanwhile, and the
# outputs are trimmed to the step where the last one finished.
CHECK_EVERY = 8


@dataclass
class Hypotheses:
    """Decoded token ids (B, L), padded after ``<eos>``, their summed log-probabilities (B,) and, for an
    attentional model, the attention weights over the source of each output token (B, L, S).

    Beam search's n-best lists add a dimension after the batch: (B, n, L), (B, n), (B, n, L, S).
    """

    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None = None

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Hypotheses:
        """``fn`` applied to the tokens, scores and attention alike (to copy them, or pick sentences)."""
        return Hypotheses(fn(self.tokens), fn(self.scores), None if self.attention is None else fn(self.attention))


def max_decode_lengths(src_lengths: torch.Tensor, max_length: int, max_length_ratio: float | None) -> torch.Tensor:
    """Per-sentence length limit (B,): ``max_length``, or ``ratio × source length + 5`` when smaller."""
    limits = torch.full_like(src_lengths, max_length)
    if max_length_ratio is not None:
        limits = torch.minimum(limits, (src_lengths.float() * max_length_ratio).long() + 5)
    return limits


def check_interval(device: torch.device, check_every: int | None = None) -> int:
    """Steps between two looks at whether decoding is done: ``check_every`` if set, else every step on a CPU (it
    runs each operation as it is called, so a look costs nothing and a step more would) and ``CHECK_EVERY`` steps
    on an accelerator."""
    if check_every is not None:
        return check_every
    return 1 if device.type == "cpu" else CHECK_EVERY
