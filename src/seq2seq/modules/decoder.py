"""Recurrent decoder: embeddings → multi-layer RNN → vocabulary logits."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.modules.rnn import State, make_rnn


class RecurrentDecoder(nn.Module):
    """Predict the next target token from the previous one and the recurrent state.

    The same fused RNN serves a whole teacher-forced sequence (T steps in one call) and a single
    decoding step (T = 1), so both paths compute the same function.

    Args:
        vocab_size: target vocabulary size.
        embedding_dim: size of the token embeddings.
        hidden_size: RNN hidden size.
        num_layers: RNN depth.
        cell: ``rnn``, ``lstm`` or ``gru``.
        dropout: dropout on embeddings, between layers and before the output layer.
        pad_id: padding token id.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        cell: str,
        dropout: float,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(
        self, inputs: torch.Tensor, state: State, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        """Run ``inputs`` (B, T) from ``state``; return logits (B, T, V) and the new state.

        ``memory`` (B, S, H_enc) and ``src_mask`` (B, S) are the encoder outputs and their
        non-padding mask: the plain context decoder ignores them, an attentional one reads them.
        """
        embedded = self.dropout(self.embedding(inputs))  # (B, T, E)
        outputs, state = self.rnn(embedded, state)  # (B, T, H)
        return self.output(self.dropout(outputs)), state  # (B, T, V)
