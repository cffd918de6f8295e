"""Attention over the encoder outputs: a score per source position, a masked softmax, a weighted sum."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.errors import ConfigError

SCORES = ("additive", "dot", "general", "concat")


class Attention(nn.Module):
    """Score a query against every encoder output, mask the padding, return context and weights.

    Scores (``q`` a decoder state, ``m_j`` the encoder output at source position j):

    * ``additive`` (Bahdanau) and ``concat`` (Luong): ``v^T tanh(W_q q + W_m m_j)``;
    * ``general`` (Luong): ``q^T W m_j``;
    * ``dot`` (Luong): ``q^T m_j`` (needs equal query and memory sizes).

    The part of the score that depends on the source only (``W_m m_j``, ``W m_j``) is computed once per
    sentence by `prepare` and reused at every decoder step.

    Args:
        score: ``additive``, ``dot``, ``general`` or ``concat``.
        query_size: size of the decoder state that asks.
        memory_size: size of each encoder output (hidden size × directions).
        attention_size: hidden size of the additive/concat score; ``None`` = ``query_size``.
    """

    def __init__(self, score: str, query_size: int, memory_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        if score not in SCORES:
            raise ConfigError(f"unknown attention.score {score!r}: use dot, general or concat")
        if score == "dot" and query_size != memory_size:
            raise ConfigError(
                f"attention.score=dot needs the decoder hidden size ({query_size}) to equal the encoder output size "
                f"({memory_size} = model.hidden_size × directions): set model.decoder_hidden_size={memory_size} "
                "or use attention.score=general"
            )
        self.score = score
        if score in ("additive", "concat"):
            attention_size = attention_size or query_size
            self.key_proj = nn.Linear(memory_size, attention_size)
            self.query_proj = nn.Linear(query_size, attention_size, bias=False)
            self.v = nn.Linear(attention_size, 1, bias=False)
        elif score == "general":
            self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def prepare(self, memory: torch.Tensor) -> torch.Tensor:
        """The query-independent keys from ``memory`` (B, S, M): (B, S, A)."""
        return memory if self.score == "dot" else self.key_proj(memory)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend with ``query`` (B, T, H) for T steps at once.

        Returns the context vectors (B, T, M) and the weights (B, T, S): ≥ 0, summing to 1 over the
        real source positions, exactly 0 on padding (``src_mask`` (B, S) is True at real tokens).
        """
        if self.score in ("additive", "concat"):
            hidden = torch.tanh(self.query_proj(query)[:, :, None] + keys[:, None])  # (B, T, S, A)
            scores = self.v(hidden).squeeze(-1)  # (B, T, S)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        scores = scores.float().masked_fill(~src_mask[:, None, :], float("-inf"))
        weights = scores.softmax(-1).to(memory.dtype)  # (B, T, S)
        return torch.bmm(weights, memory), weights  # (B, T, M), (B, T, S)
