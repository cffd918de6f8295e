"""Decoders: the plain context-vector decoder and the Bahdanau and Luong attentional decoders.

Each maps the previous target tokens ``inputs`` (B, T) and a `DecoderState` to logits (B, T, V), the new
state and the attention weights (B, T, S) (``None`` without attention); ``features`` stops before the output
layer, for the loss that fuses it (`seq2seq.modules.loss`). The same call serves a whole
teacher-forced sequence (T steps) and one decoding step (T = 1), so training and decoding compute the same
function. Each kind computes its readout in ``_features``; ``features`` adds the projection a tied output
layer may need (`seq2seq.modules.embeddings`).
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.modules.attention import Attention
from seq2seq.modules.rnn import make_rnn
from seq2seq.modules.state import DecoderState, Encoded

ATTENTIONS = ("none", "bahdanau", "luong")

DecoderOutput = tuple[torch.Tensor, DecoderState, torch.Tensor | None]


class RecurrentDecoder(nn.Module):
    """Embeddings → multi-layer RNN → vocabulary logits; the source reaches it only through the initial state.

    Args:
        vocab_size: target vocabulary size.
        embedding_dim: size of the token embeddings.
        hidden_size: RNN hidden size.
        num_layers: RNN depth.
        cell: ``rnn``, ``lstm`` or ``gru``.
        dropout: dropout on embeddings, between layers and before the output layer.
        pad_id: padding token id.
        rnn_input_size: for attentional subclasses, the RNN's input size; ``None`` = ``embedding_dim``.
        output_input_size: for attentional subclasses, the output layer's input size; ``None`` = ``hidden_size``.
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
        *,
        rnn_input_size: int | None = None,
        output_input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, rnn_input_size or embedding_dim, hidden_size, num_layers, dropout)
        self.output = nn.Linear(output_input_size or hidden_size, vocab_size)
        # set by `seq2seq.modules.embeddings.tie_output` when the tied output layer's input size differs
        self.projection: nn.Linear | None = None

    @property
    def fused(self) -> bool:
        """Whether a teacher-forced sequence runs as one RNN call over all steps."""
        return True

    def prepare(self, memory: torch.Tensor) -> torch.Tensor | None:
        """Attention keys computed once per source (B, S, A); none here."""
        return None

    def forward(self, inputs: torch.Tensor, state: DecoderState, encoded: Encoded) -> DecoderOutput:
        """Logits (B, T, V) for ``inputs`` (B, T), the new state and the attention weights (B, T, S) or None."""
        features, state, weights = self.features(inputs, state, encoded)
        return self.output(features), state, weights

    def features(self, inputs: torch.Tensor, state: DecoderState, encoded: Encoded) -> DecoderOutput:
        """Like `forward`, but the output layer's input (B, T, F) (dropout applied) instead of the logits."""
        features, state, weights = self._features(inputs, state, encoded)
        if self.projection is not None:
            features = self.projection(features)  # (B, T, E): the tied output layer reads embedding-sized vectors
        return features, state, weights

    def _features(self, inputs: torch.Tensor, state: DecoderState, encoded: Encoded) -> DecoderOutput:
        """The readout (B, T, F) before any projection; each decoder kind defines its own."""
        embedded = self.dropout(self.embedding(inputs))  # (B, T, E)
        outputs, rnn_state = self.rnn(embedded, state.rnn)  # (B, T, H)
        return self.dropout(outputs), DecoderState(rnn_state), None


class BahdanauDecoder(RecurrentDecoder):
    """Bahdanau et al. (2015): additive attention, queried with the previous state, feeds the RNN input.

    At step t: ``c_t = attend(s_{t-1}, memory)``, ``s_t = RNN([e(y_{t-1}); c_t], s_{t-1})`` and
    ``logits = W [s_t; c_t; e(y_{t-1})]``. The query depends on the previous step, so the RNN steps one
    token at a time; the output layer still runs once over all steps.

    Args (beyond `RecurrentDecoder`'s):
        memory_size: encoder output size (hidden size × directions).
        attention_size: hidden size of the additive score; ``None`` = ``hidden_size``.
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
        memory_size: int,
        attention_size: int | None = None,
    ) -> None:
        super().__init__(
            vocab_size,
            embedding_dim,
            hidden_size,
            num_layers,
            cell,
            dropout,
            pad_id,
            rnn_input_size=embedding_dim + memory_size,
            output_input_size=hidden_size + memory_size + embedding_dim,
        )
        self.attention = Attention("additive", hidden_size, memory_size, attention_size)

    @property
    def fused(self) -> bool:
        return False

    def prepare(self, memory: torch.Tensor) -> torch.Tensor:
        return self.attention.prepare(memory)

    def _features(self, inputs: torch.Tensor, state: DecoderState, encoded: Encoded) -> DecoderOutput:
        embedded = self.dropout(self.embedding(inputs))  # (B, T, E)
        outputs, contexts, weights = [], [], []
        for embedded_t in embedded.unbind(1):  # unbind: its backward is one stack, not T zero-filled slices
            query = state.top_hidden()[:, None]  # (B, 1, H)
            context, weight = self.attention(query, encoded.keys, encoded.memory, encoded.src_mask)  # (B, 1, M)
            output, rnn_state = self.rnn(torch.cat([embedded_t[:, None], context], dim=-1), state.rnn)
            state = DecoderState(rnn_state)
            outputs.append(output)
            contexts.append(context)
            weights.append(weight)
        features = torch.cat([torch.cat(outputs, 1), torch.cat(contexts, 1), embedded], dim=-1)  # (B, T, H+M+E)
        return self.dropout(features), state, torch.cat(weights, 1)  # (B, T, H+M+E), …, (B, T, S)


class LuongDecoder(RecurrentDecoder):
    """Luong et al. (2015): attention queried with the new RNN output, an attentional vector feeds the output.

    At step t: ``h_t = RNN(x_t, h_{t-1})``, ``c_t = attend(h_t, memory)``, ``h̃_t = tanh(W_c [c_t; h_t])``,
    ``logits = W_s h̃_t``. With input feeding ``x_t = [e(y_{t-1}); h̃_{t-1}]`` and the RNN steps token by
    token; without it ``x_t = e(y_{t-1})``, the RNN runs fused over all steps and the attention of all steps
    is one batched matrix product.

    Args (beyond `RecurrentDecoder`'s):
        memory_size: encoder output size (hidden size × directions).
        score: ``dot``, ``general`` or ``concat``.
        input_feeding: feed h̃_{t-1} into the next step's RNN input.
        attention_size: hidden size of the concat score; ``None`` = ``hidden_size``.
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
        memory_size: int,
        score: str = "general",
        input_feeding: bool = True,
        attention_size: int | None = None,
    ) -> None:
        if score not in ("dot", "general", "concat"):
            raise ConfigError(f"unknown attention.score {score!r}: use dot, general or concat")
        super().__init__(
            vocab_size,
            embedding_dim,
            hidden_size,
            num_layers,
            cell,
            dropout,
            pad_id,
            rnn_input_size=embedding_dim + (hidden_size if input_feeding else 0),
        )
        self.input_feeding = input_feeding
        self.attention = Attention(score, hidden_size, memory_size, attention_size)
        self.combine = nn.Linear(memory_size + hidden_size, hidden_size, bias=False)

    @property
    def fused(self) -> bool:
        return not self.input_feeding

    def prepare(self, memory: torch.Tensor) -> torch.Tensor:
        return self.attention.prepare(memory)

    def _attend(self, outputs: torch.Tensor, encoded: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """Attentional vectors h̃ (B, T, H) and weights (B, T, S) for RNN outputs (B, T, H)."""
        context, weights = self.attention(outputs, encoded.keys, encoded.memory, encoded.src_mask)  # (B, T, M)
        return torch.tanh(self.combine(torch.cat([context, outputs], dim=-1))), weights

    def _features(self, inputs: torch.Tensor, state: DecoderState, encoded: Encoded) -> DecoderOutput:
        embedded = self.dropout(self.embedding(inputs))  # (B, T, E)
        if not self.input_feeding:
            outputs, rnn_state = self.rnn(embedded, state.rnn)  # (B, T, H): all steps in one call
            attentional, weights = self._attend(outputs, encoded)
            return self.dropout(attentional), DecoderState(rnn_state), weights
        feed = state.feed if state.feed is not None else embedded.new_zeros(inputs.size(0), self.hidden_size)
        rnn_state, attentionals, weights = state.rnn, [], []
        for embedded_t in embedded.unbind(1):
            rnn_input = torch.cat([embedded_t, feed], dim=-1)[:, None]  # (B, 1, E + H)
            output, rnn_state = self.rnn(rnn_input, rnn_state)  # (B, 1, H)
            attentional, weight = self._attend(output, encoded)
            feed = attentional[:, 0]
            attentionals.append(attentional)
            weights.append(weight)
        features = self.dropout(torch.cat(attentionals, 1))  # (B, T, H)
        return features, DecoderState(rnn_state, feed), torch.cat(weights, 1)


def make_decoder(attention: dict | None, memory_size: int, **common) -> RecurrentDecoder:
    """The decoder for an ``attention`` config node (``kind``: none, bahdanau or luong, plus its options)."""
    options = dict(attention or {})
    kind = options.pop("kind", "none")
    if kind not in ATTENTIONS:
        raise ConfigError(f"unknown attention {kind!r}: use attention=none, attention=bahdanau or attention=luong")
    size = options.pop("size", None)
    allowed = {"none": set(), "bahdanau": set(), "luong": {"score", "input_feeding"}}[kind]
    if unknown := set(options) - allowed:
        raise ConfigError(
            f"attention={kind} has no option {', '.join(sorted(unknown))}: "
            f"its options are {', '.join(sorted(allowed | {'size'})) if kind != 'none' else 'none'}"
        )
    if kind == "bahdanau":
        return BahdanauDecoder(**common, memory_size=memory_size, attention_size=size)
    if kind == "luong":
        return LuongDecoder(**common, memory_size=memory_size, attention_size=size, **options)
    return RecurrentDecoder(**common)
