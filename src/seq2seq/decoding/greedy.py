"""Greedy decoding: y_t = argmax p(y_t | y_<t, x), fed back until ``<eos>``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq


@dataclass
class Hypotheses:
    """Decoded token ids (B, L), padded after ``<eos>``, their summed log-probabilities (B,) and, for an
    attentional model, the attention weights over the source of each output token (B, L, S)."""

    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None = None


def max_decode_lengths(src_lengths: torch.Tensor, max_length: int, max_length_ratio: float | None) -> torch.Tensor:
    """Per-sentence length limit (B,): ``max_length``, or ``ratio × source length + 5`` when smaller."""
    limits = torch.full_like(src_lengths, max_length)
    if max_length_ratio is not None:
        limits = torch.minimum(limits, (src_lengths.float() * max_length_ratio).long() + 5)
    return limits


class GreedySearch:
    """Batched greedy decoding (``decoding=greedy``).

    Args:
        max_length: most tokens generated per sentence, ``<eos>`` included.
        max_length_ratio: if set, at most ``ratio × source length + 5`` tokens per sentence.
    """

    def __init__(self, max_length: int = 100, max_length_ratio: float | None = None) -> None:
        if max_length < 1:
            raise ConfigError(f"decoding.max_length must be >= 1, got {max_length}")
        self.max_length = max_length
        self.max_length_ratio = max_length_ratio

    def choose(self, log_probs: torch.Tensor) -> torch.Tensor:
        """The next token of each sentence from its log-probabilities (B, V): the argmax."""
        return log_probs.argmax(-1)

    @torch.no_grad()
    def __call__(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Decode the batch ``src`` (B, S) of lengths ``src_lengths`` (B,)."""
        encoded = model.encode(src, src_lengths)
        limits = max_decode_lengths(src_lengths, self.max_length, self.max_length_ratio).to(src.device)
        batch = src.size(0)
        tokens = torch.full((batch,), sos_id, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        scores = torch.zeros(batch, device=src.device)
        state, steps, weights = encoded.state, [], []
        for t in range(int(limits.max())):
            logits, state, attention = model.decode_step(tokens, state, encoded)  # (B, V), …, (B, S) or None
            weights.append(attention)
            log_probs = logits.float().log_softmax(-1)
            best = self.choose(log_probs)  # (B,)
            # A sentence at its length limit is forced to end.
            best = torch.where(limits <= t + 1, torch.full_like(best, eos_id), best)
            scores += torch.where(finished, 0.0, log_probs.gather(1, best[:, None]).squeeze(1))
            tokens = torch.where(finished, torch.full_like(best, pad_id), best)
            steps.append(tokens)
            finished |= tokens == eos_id
            if bool(finished.all()):
                break
        attention = torch.stack(weights, dim=1) if model.has_attention else None  # (B, L, S)
        return Hypotheses(torch.stack(steps, dim=1), scores, attention)  # (B, L), (B,)
