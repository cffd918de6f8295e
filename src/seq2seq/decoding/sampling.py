"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

import torch

from seq2seq.decoding.greedy import GreedySearch
from seq2seq.errors import ConfigError


class SampleSearch(GreedySearch):
    """Sample each next token (``decoding=sample``); reproducible through torch's seeded generator.

    Scores are the model's log-probabilities of the sampled tokens, before any filtering.

    Args:
        temperature: divides the logits; < 1 sharpens, > 1 flattens.
        top_k: sample among the k most likely tokens only (0 = all).
        top_p: sample among the smallest set of tokens whose probability reaches p (1 = all).
        max_length: most tokens per sentence, ``<eos>`` included.
        max_length_ratio: if set, at most ``ratio × source length + 5`` tokens.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_length: int = 100,
        max_length_ratio: float | None = None,
    ) -> None:
        super().__init__(max_length, max_length_ratio)
        if temperature <= 0:
            raise ConfigError(f"decoding.temperature must be > 0, got {temperature}")
        if top_k < 0:
            raise ConfigError(f"decoding.top_k must be >= 0, got {top_k}")
        if not 0.0 < top_p <= 1.0:
            raise ConfigError(f"decoding.top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def choose(self, log_probs: torch.Tensor) -> torch.Tensor:
        logits = log_probs / self.temperature  # (B, V)
        if self.top_k:
            kth = logits.topk(min(self.top_k, logits.size(-1)), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            # drop a token when the ones before it already reach top_p (the first always stays)
            drop = cumulative - sorted_logits.softmax(-1) >= self.top_p
            logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1).squeeze(1)
