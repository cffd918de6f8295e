"""Recurrent encoder: embeddings → packed multi-layer (bi)RNN."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, invert_permutation, pack_padded_sequence, pad_packed_sequence

from seq2seq.modules.rnn import State, make_rnn, map_state


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
        packed, restore = pack_on_host_lengths(embedded, src_lengths)
        packed_outputs, final_state = self.rnn(packed)  # final state in the sorted order
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=src.size(1))
        outputs = outputs.index_select(0, restore)  # back to the batch order: (B, S, H·dirs)
        final_state = map_state(final_state, lambda s: s.index_select(1, restore))  # (L·dirs, B, H)
        return self.dropout(outputs), final_state


def pack_on_host_lengths(padded: torch.Tensor, lengths: torch.Tensor) -> tuple[PackedSequence, torch.Tensor]:
    """Pack ``padded`` (B, S, E) of true ``lengths`` (B,), sorted longest first; never waits for the device.

    ``pack_padded_sequence(enforce_sorted=False)`` copies its sort order to the device from pageable memory, and
    ``pad_packed_sequence`` copies the inverse order back to the host: each a blocking copy per encoder call.
    Here the lengths are sorted on the CPU (a `Batch` keeps them there), the order travels to the device once,
    from pinned memory without blocking, and the inverse order is computed on the device.

    Returns:
        the packed sequence, with no sort indices (the RNN's final state comes out in the sorted order), and
        ``restore`` (B,), on ``padded``'s device: ``index_select(restore)`` puts sorted rows back in batch order.
    """
    sorted_lengths, order = torch.sort(lengths.cpu(), descending=True)  # (B,), (B,) on the CPU
    if padded.device.type == "cuda":
        order = order.pin_memory().to(padded.device, non_blocking=True)
    restore = invert_permutation(order)  # (B,)
    packed = pack_padded_sequence(padded.index_select(0, order), sorted_lengths, batch_first=True)
    return packed, restore
