"""The recurrent cell switch shared by encoder and decoder."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.errors import ConfigError

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

# An RNN state: a tensor (layers·dirs, B, H), or the pair (h, c) of such tensors for an LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def make_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool = False
) -> nn.RNNBase:
    """Build a fused (cuDNN/oneDNN) multi-layer `nn.RNN`/`nn.LSTM`/`nn.GRU`, batch first."""
    if cell not in CELLS:
        raise ConfigError(f"unknown cell type {cell!r}: use model=rnn, model=lstm or model=gru")
    return CELLS[cell](
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=dropout if num_layers > 1 else 0.0,
        bidirectional=bidirectional,
        batch_first=True,
    )


def map_state(state: State, fn) -> State:
    """Apply `fn` to h, and to c as well for an LSTM state."""
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)
    return fn(state)
