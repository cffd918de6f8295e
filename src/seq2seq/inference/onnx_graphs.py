"""The two ONNX graphs of a `Seq2Seq`: the encoder and the one-step decoder, as exportable modules.

The encoder graph is `Seq2Seq.encode` with one change: the packed (bi)RNN runs as the custom op `packed_rnn`,
which the exporter translates (`packed_rnn_onnx`) into ONNX's own RNN/LSTM/GRU operators with their
``sequence_lens`` input, so a bidirectional encoder reads each padded sentence from its own end, as packing does in
eager PyTorch (the exporter cannot trace ``pack_padded_sequence``, and its own lowering of ``nn.RNN`` is unrolled
over a fixed length). The step graph is `Seq2Seq.decode_step` itself, the same code the eager model decodes with,
returning its logits.

Graph inputs and outputs (B sentences or beams, S source positions; ``c`` for an LSTM, ``feed`` for Luong input
feeding, ``keys`` for attention scores with a source part):

* encoder ``(src (B, S) int64, src_lengths (B,) int64) → memory (B, S, M), src_mask (B, S) bool,
  h (L, B, H) [, c (L, B, H)] [, feed (B, H)] [, keys (B, S, A)]``
* step ``(tokens (B,) int64, h [, c] [, feed] [, memory, src_mask [, keys]]) → logits (B, V), h [, c] [, feed]
  [, attention (B, S)]``
"""

from __future__ import annotations

import torch
from onnxscript import opset18 as op
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.modules import Seq2Seq
from seq2seq.modules.rnn import CELLS
from seq2seq.modules.state import DecoderState, Encoded

# ONNX orders the gates of its RNN operators differently from PyTorch: the PyTorch gate blocks, in ONNX's order.
ONNX_GATE_ORDER = {"rnn": (0,), "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}  # LSTM i f g o → i o f c; GRU r z n → z r n
OPSET = 18


@torch.library.custom_op("seq2seq::packed_rnn", mutates_args=())
def packed_rnn(
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    weights: list[torch.Tensor],
    cell: str,
    num_layers: int,
    bidirectional: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A multi-layer (bi)RNN over a padded batch read up to each sentence's length (what packing computes).

    Args:
        inputs: (B, S, I), batch first.
        lengths: (B,) true lengths.
        weights: the RNN's parameters in `nn.RNNBase.all_weights` order (w_ih, w_hh, b_ih, b_hh per layer and
            direction).
        cell: ``rnn``, ``lstm`` or ``gru``.
        num_layers: depth.
        bidirectional: whether there is a backward direction.

    Returns:
        outputs (B, S, dirs·H), zero at padding; h and c (L·dirs, B, H) at each sentence's end (c is zeros but
        for an LSTM).
    """
    hidden_size = weights[1].size(1)
    rnn = CELLS[cell](inputs.size(-1), hidden_size, num_layers, bidirectional=bidirectional, batch_first=True)
    with torch.no_grad():
        for target, source in zip([w for layer in rnn.all_weights for w in layer], weights):
            target.copy_(source)
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, state = rnn(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.size(1))
    h, c = state if cell == "lstm" else (state, torch.zeros_like(state))
    return outputs, h, c


@packed_rnn.register_fake
def _packed_rnn_shapes(inputs, lengths, weights, cell, num_layers, bidirectional):
    hidden_size, directions = weights[1].size(1), 2 if bidirectional else 1
    batch, length = inputs.size(0), inputs.size(1)
    state = inputs.new_empty(num_layers * directions, batch, hidden_size)
    return inputs.new_empty(batch, length, directions * hidden_size), state, torch.empty_like(state)


def packed_rnn_onnx(inputs, lengths, weights, cell: str, num_layers: int, bidirectional: bool):
    """`packed_rnn` in ONNX: per layer, one RNN/LSTM/GRU operator reading ``sequence_lens``.

    The gate blocks are reordered and the biases joined inside the graph (on initializers: ONNX Runtime folds them
    once, when it loads the graph). GRU gets ``linear_before_reset=1``, PyTorch's formulation (ONNX's default, 0,
    applies the reset gate before the recurrent product: another function).
    """
    directions = 2 if bidirectional else 1
    hidden_size = weights[1].shape[1]
    order = ONNX_GATE_ORDER[cell]

    def gates(w):  # (G·H, …) in PyTorch's gate order → ONNX's
        if len(order) == 1:
            return w
        return op.Concat(*[op.Slice(w, [g * hidden_size], [(g + 1) * hidden_size], [0]) for g in order], axis=0)

    def stack(tensors):  # per direction → (dirs, …)
        tensors = [op.Unsqueeze(t, [0]) for t in tensors]
        return op.Concat(*tensors, axis=0) if len(tensors) > 1 else tensors[0]

    x = op.Transpose(inputs, perm=[1, 0, 2])  # (S, B, I): ONNX RNNs are time-major
    sequence_lens = op.Cast(lengths, to=6)  # int32
    direction = "bidirectional" if bidirectional else "forward"
    hs, cs = [], []
    for layer in range(num_layers):
        w_ih, w_hh, biases = [], [], []
        for k in range(directions):
            first = (layer * directions + k) * 4
            w_ih.append(gates(weights[first]))
            w_hh.append(gates(weights[first + 1]))
            biases.append(op.Concat(gates(weights[first + 2]), gates(weights[first + 3]), axis=0))  # [Wb; Rb]
        w, r, b = stack(w_ih), stack(w_hh), stack(biases)
        if cell == "lstm":
            y, y_h, y_c = op.LSTM(x, w, r, b, sequence_lens, hidden_size=hidden_size, direction=direction)
            cs.append(y_c)
        elif cell == "gru":
            y, y_h = op.GRU(
                x, w, r, b, sequence_lens, hidden_size=hidden_size, direction=direction, linear_before_reset=1
            )
        else:
            y, y_h = op.RNN(x, w, r, b, sequence_lens, hidden_size=hidden_size, direction=direction)
        hs.append(y_h)  # (dirs, B, H)
        x = op.Reshape(op.Transpose(y, perm=[0, 2, 1, 3]), [0, 0, -1])  # (S, dirs, B, H) → (S, B, dirs·H)
    h = op.Concat(*hs, axis=0) if len(hs) > 1 else hs[0]  # (L·dirs, B, H)
    c = (op.Concat(*cs, axis=0) if len(cs) > 1 else cs[0]) if cs else op.Mul(h, op.Constant(value_float=0.0))
    return op.Transpose(x, perm=[1, 0, 2]), h, c


def feeds(model: Seq2Seq) -> bool:
    """Whether the decoder state carries Luong's input-feeding vector."""
    return bool(getattr(model.decoder, "input_feeding", False))


def state_names(model: Seq2Seq) -> list[str]:
    """The decoder state's tensors, in graph order: ``h``, ``c`` for an LSTM, ``feed`` with input feeding."""
    return ["h", *(["c"] if model.encoder.cell == "lstm" else []), *(["feed"] if feeds(model) else [])]


def has_keys(model: Seq2Seq) -> bool:
    """Whether the attention keys are a tensor of their own (not for ``dot``, whose keys are the memory)."""
    return model.has_attention and model.decoder.attention.score != "dot"


def state_tensors(state: DecoderState) -> list[torch.Tensor]:
    """The tensors of ``state`` in `state_names` order."""
    rnn = list(state.rnn) if isinstance(state.rnn, tuple) else [state.rnn]
    return [*rnn, *([] if state.feed is None else [state.feed])]


def state_from(tensors: list[torch.Tensor], lstm: bool, feed: bool) -> DecoderState:
    """The `DecoderState` of ``tensors`` in `state_names` order."""
    rnn = (tensors[0], tensors[1]) if lstm else tensors[0]
    return DecoderState(rnn, tensors[-1] if feed else None)


class EncoderGraph(nn.Module):
    """`Seq2Seq.encode` with the packed RNN as `packed_rnn`, its results as a flat tuple of tensors."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoder, model = self.model.encoder, self.model
        embedded = encoder.embedding(src)  # (B, S, E)
        weights = [w for layer in encoder.rnn.all_weights for w in layer]
        memory, h, c = packed_rnn(
            embedded, src_lengths, weights, encoder.cell, encoder.num_layers, encoder.num_directions == 2
        )  # (B, S, H·dirs), (L·dirs, B, H) ×2
        state = DecoderState(model.bridge((h, c) if encoder.cell == "lstm" else h))
        if feeds(model):  # the eager decoder starts from zeros when the state has no feed yet
            state.feed = memory.new_zeros(src.size(0), model.decoder.hidden_size)  # (B, H)
        keys = [model.decoder.prepare(memory)] if has_keys(model) else []
        return (memory, src != model.pad_id, *state_tensors(state), *keys)


class StepGraph(nn.Module):
    """`Seq2Seq.decode_step` on flat tensors (see the module docstring).

    It returns logits, as the eager step does: the searches normalize them once (``log_softmax``), where a
    normalizing graph would have them normalized twice.
    """

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model
        self.lstm, self.feed = model.encoder.cell == "lstm", feeds(model)
        self.num_state = len(state_names(model))

    def forward(self, tokens: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = state_from(list(inputs[: self.num_state]), self.lstm, self.feed)
        source = inputs[self.num_state :]  # memory, src_mask [, keys], with attention
        if self.model.has_attention:
            memory, src_mask = source[0], source[1]
            keys = source[2] if len(source) > 2 else self.model.decoder.prepare(memory)
            encoded = Encoded(memory, src_mask, state, keys)
        else:
            encoded = None  # a decoder without attention never reads the source
        logits, state, weights = self.model.decode_step(tokens, state, encoded)  # (B, V), …, (B, S) or None
        return (logits.float(), *state_tensors(state), *([] if weights is None else [weights]))
