"""The recurrent cell switch shared by encoder and decoder."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from seq2seq import compat
from seq2seq.errors import ConfigError

# Under autocast the cast weights are not one flat cuDNN buffer, so cuDNN packs them at each call, as autocast's
# own RNN wrapper does; its warning about it says nothing the user can act on.
warnings.filterwarnings(
    "ignore", message="RNN module weights are not part of single contiguous chunk", category=UserWarning
)

# An RNN state: a tensor (layers·dirs, B, H), or the pair (h, c) of such tensors for an LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class AutocastDtype:
    """Mixin for `nn.RNNBase`: under autocast, run the recurrence in the autocast dtype itself.

    Autocast has no right policy for the fused RNN ops: on CUDA its cuDNN wrapper casts to fp16 whatever the
    autocast dtype (so ``bf16-mixed`` ran every recurrent layer in fp16, without a loss scaler), and on the CPU it
    casts the LSTM but leaves RNN and GRU in fp32. Here autocast is switched off around the call, and the input,
    the state and the weights are cast to the autocast dtype; the cast weights stay in the autograd graph, so the
    fp32 parameters get their gradients. Without autocast the module is untouched.
    """

    def forward(self, input, hx=None):  # noqa: A002, ANN001, ANN201 - nn.RNNBase's signature
        data = input.data if isinstance(input, PackedSequence) else input
        device = data.device.type
        if not torch.is_autocast_enabled(device):
            return super().forward(input, hx)
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False), compat.rnn_weights_cast(self, dtype):
            input = input.to(dtype)
            hx = None if hx is None else map_state(hx, lambda h: h.to(dtype))
            return super().forward(input, hx)


class RNN(AutocastDtype, nn.RNN):
    """`nn.RNN` that runs in the autocast dtype."""


class LSTM(AutocastDtype, nn.LSTM):
    """`nn.LSTM` that runs in the autocast dtype."""


class GRU(AutocastDtype, nn.GRU):
    """`nn.GRU` that runs in the autocast dtype."""


CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def make_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool = False
) -> nn.RNNBase:
    """Build a fused (cuDNN/oneDNN) multi-layer `nn.RNN`/`nn.LSTM`/`nn.GRU`, batch first, in the autocast dtype."""
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
