"""Recurrent encoder: embeddings → packed multi-layer (bi)RNN."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.modules.rnn import State, make_rnn


class RecurrentEncoder(nn.Module):
    """Encode a padded source batch with one fused RNN call over packed sequences.

    Args:
        vocab_size: source vocabulary size.
        embedding_dim: size of the token embeddings.
        hidden_size: RNN hidden size per direction.
        num_layers: RNN depth.
        cell: ``rnn``, ``lstm`` or ``gru``.
        bidirectional: run a backward RNN too; outputs and states carry both directions.
        dropout: dropout on embeddings, between layers and on the outputs.
        pad_id: padding token id.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        cell: str,
        bidirectional: bool,
        dropout: float,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, bidirectional)

    @property
    def output_size(self) -> int:
        """Feature size of each encoder output: hidden size × directions."""
        return self.hidden_size * self.num_directions

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Encode ``src`` (B, S) of true lengths ``src_lengths`` (B,).

        Returns:
            outputs (B, S, H·dirs), zero at padded positions, and the final state
            (layers·dirs, B, H) — a pair (h, c) for an LSTM — taken at each sequence's true end.
        """
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        # pack_padded_sequence wants the lengths on the CPU; the copy is tiny.
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_outputs, final_state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=src.size(1))
        return self.dropout(outputs), final_state  # (B, S, H·dirs), (L·dirs, B, H)
