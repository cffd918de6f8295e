"""The encoder → context → decoder model."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.modules.context import Bridge
from seq2seq.modules.decoder import make_decoder
from seq2seq.modules.embeddings import apply_tying, freeze_pretrained
from seq2seq.modules.encoder import RecurrentEncoder
from seq2seq.modules.loss import TokenLoss, cross_entropy, linear_cross_entropy
from seq2seq.modules.rnn import CELLS
from seq2seq.modules.state import DecoderState, Encoded
from seq2seq.teacher_forcing import check_mode


class Seq2Seq(nn.Module):
    """RNN encoder-decoder; every argument is a config key under ``model.``.

    Args:
        src_vocab_size: source vocabulary size (set from the data's tokenizer).
        tgt_vocab_size: target vocabulary size (set from the data's tokenizer).
        cell: ``rnn``, ``lstm`` or ``gru``, for encoder and decoder.
        embedding_dim: token embedding size, source and target.
        hidden_size: encoder hidden size per direction.
        num_layers: encoder depth.
        bidirectional: bidirectional encoder.
        dropout: dropout probability.
        decoder_hidden_size: decoder hidden size; ``None`` = hidden_size × directions.
        decoder_num_layers: decoder depth; ``None`` = num_layers.
        bridge: how the context becomes the decoder state: ``linear``, ``copy`` or ``zeros``.
        attention: the ``attention`` config node: ``{kind: none|bahdanau|luong, size, score, input_feeding}``;
            ``None`` = no attention.
        tie_embeddings: ``none``; ``decoder``: the target embedding is the output layer's weight (with a projection
            to the embedding size where the decoder's readout is wider); ``all``: the source embedding too.
        pretrained_embeddings: the ``model.pretrained_embeddings`` node ``{source, target, freeze}``: the vector
            files are read by `seq2seq.modules.embeddings.load_pretrained_embeddings` when a model is built for
            training; here only ``freeze`` acts, on the embeddings of the sides that have a file.
        joint_vocab: whether source and target share one vocabulary (set from the tokenizers); ``tie_embeddings=all``
            needs it.
        label_smoothing: ε of the training loss (`losses`), in [0, 1): ``(1 − ε)·NLL + ε·mean over the vocabulary of
            −log p``; evaluation (`forward`'s logits) is not affected.
        pad_id: padding token id.
        compile: compile the training forward pass with `torch.compile` (dynamic shapes); decoding stays eager.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        cell: str = "gru",
        embedding_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        decoder_hidden_size: int | None = None,
        decoder_num_layers: int | None = None,
        bridge: str = "linear",
        attention: Mapping | None = None,
        tie_embeddings: str = "none",
        pretrained_embeddings: Mapping | None = None,
        joint_vocab: bool = False,
        label_smoothing: float = 0.0,
        pad_id: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"unknown cell type {cell!r}: use model=rnn, model=lstm or model=gru")
        directions = 2 if bidirectional else 1
        decoder_hidden_size = decoder_hidden_size or hidden_size * directions
        decoder_num_layers = decoder_num_layers or num_layers
        self.pad_id = pad_id
        self.label_smoothing = float(label_smoothing)
        self.encoder = RecurrentEncoder(
            src_vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout, pad_id
        )
        self.bridge = Bridge(bridge, cell, hidden_size, num_layers, directions, decoder_hidden_size, decoder_num_layers)
        self.decoder = make_decoder(
            attention,
            memory_size=self.encoder.output_size,
            vocab_size=tgt_vocab_size,
            embedding_dim=embedding_dim,
            hidden_size=decoder_hidden_size,
            num_layers=decoder_num_layers,
            cell=cell,
            dropout=dropout,
            pad_id=pad_id,
        )
        apply_tying(self, tie_embeddings, joint_vocab)
        freeze_pretrained(self, pretrained_embeddings)
        self.compiled = compile
        if compile:
            self.compile(dynamic=True)  # in place: the state_dict keys stay the same

    @property
    def has_attention(self) -> bool:
        """Whether the decoder attends over the encoder outputs (and decoding can return the weights)."""
        return hasattr(self.decoder, "attention")

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Encoded:
        """Encode ``src`` (B, S); bridge the final state into the decoder's initial state; prepare attention."""
        memory, final_state = self.encoder(src, src_lengths)
        return Encoded(memory, src != self.pad_id, DecoderState(self.bridge(final_state)), self.decoder.prepare(memory))

    def decode_step(
        self, tokens: torch.Tensor, state: DecoderState, encoded: Encoded
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One decoding step: ``tokens`` (B,) → logits (B, V), the new state, attention weights (B, S) or None."""
        logits, state, weights = self.decoder(tokens[:, None], state, encoded)
        return logits[:, 0], state, None if weights is None else weights[:, 0]

    def teacher_forced(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) and attention weights (B, T, S) (or None) with the gold inputs ``tgt_in`` (B, T)."""
        encoded = self.encode(src, src_lengths)
        logits, _, weights = self.decoder(tgt_in, encoded.state, encoded)
        return logits, weights

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        tf_ratio: float = 1.0,
        tf_mode: str = "exact",
    ) -> torch.Tensor:
        """Return logits (B, T, V) for the target inputs ``tgt_in`` (B, T) = ``<sos> y1 … y_{T-1}``.

        At ``tf_ratio >= 1`` the decoder sees the gold inputs (one fused RNN call over all T steps where the
        decoder allows it). Below 1 the input at step t is the gold token with probability ``tf_ratio``, drawn
        per example and per step from torch's (seeded) generator, otherwise the model's own argmax at step t - 1:

        * ``tf_mode="exact"`` steps through time, so the argmax is the one of the sequence being decoded;
        * ``tf_mode="parallel"`` approximates it in two fused passes (Mihaylova & Martins, 2019): a teacher-forced
          pass without gradients predicts every step's argmax, the gold and predicted tokens are mixed by the
          ratio, and a second teacher-forced pass on the mixed inputs is trained.
        """
        check_mode(tf_mode)
        if tf_ratio >= 1.0:
            return self.teacher_forced(src, src_lengths, tgt_in)[0]
        encoded = self.encode(src, src_lengths)
        if tf_mode == "parallel":
            return self.decoder(self._parallel_inputs(tgt_in, encoded, tf_ratio), encoded.state, encoded)[0]
        use_gold = _coins(tgt_in, tf_ratio)
        state, inputs, steps = encoded.state, tgt_in[:, 0], []
        for t in range(tgt_in.size(1)):
            logits_t, state, _ = self.decode_step(inputs, state, encoded)  # (B, V)
            steps.append(logits_t)
            if t + 1 < tgt_in.size(1):
                inputs = torch.where(use_gold[:, t + 1], tgt_in[:, t + 1], logits_t.argmax(-1))
        return torch.stack(steps, dim=1)  # (B, T, V)

    def _parallel_inputs(self, tgt_in: torch.Tensor, encoded: Encoded, tf_ratio: float) -> torch.Tensor:
        """The second pass's inputs (B, T) of ``tf_mode="parallel"``: gold or the first pass's argmax, by coin."""
        use_gold = _coins(tgt_in, tf_ratio)
        with torch.no_grad():
            first_pass, _, _ = self.decoder(tgt_in, encoded.state, encoded)  # (B, T, V)
        predicted = torch.cat([tgt_in[:, :1], first_pass[:, :-1].argmax(-1)], dim=1)  # (B, T): step t-1's argmax
        return torch.where(use_gold, tgt_in, predicted)

    def loss(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        tgt_out: torch.Tensor,
        tf_ratio: float = 1.0,
        tf_mode: str = "exact",
    ) -> torch.Tensor:
        """The training objective of `losses` (label-smoothed token cross-entropy over the non-pad targets)."""
        return self.losses(src, src_lengths, tgt_in, tgt_out, tf_ratio=tf_ratio, tf_mode=tf_mode).loss

    def losses(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        tgt_out: torch.Tensor,
        tf_ratio: float = 1.0,
        tf_mode: str = "exact",
    ) -> TokenLoss:
        """The training loss averaged over the non-pad targets ``tgt_out`` (B, T), and the unsmoothed cross-entropy.

        The same values as `cross_entropy` on `forward`'s logits (with ``label_smoothing``). Where the decoder's
        inputs are known before it runs (ratio 1.0, and the second pass of ``parallel``), the output layer and the
        loss are fused (`linear_cross_entropy`): the (B·T, V) logits are never stored for backward, and on the CPU
        padded positions skip the output layer (on a GPU they are masked: counting them would wait for the device).
        The exact step loop needs each step's logits for its argmax, and a compiled model compiles `forward`,
        so those two take the plain path.
        """
        check_mode(tf_mode)
        if self.compiled or (tf_ratio < 1.0 and tf_mode == "exact"):
            logits = self(src, src_lengths, tgt_in, tf_ratio=tf_ratio, tf_mode=tf_mode)  # (B, T, V)
            return cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), self.pad_id, self.label_smoothing)
        encoded = self.encode(src, src_lengths)
        inputs = tgt_in if tf_ratio >= 1.0 else self._parallel_inputs(tgt_in, encoded, tf_ratio)
        features, _, _ = self.decoder.features(inputs, encoded.state, encoded)  # (B, T, F)
        return linear_cross_entropy(
            features.flatten(0, 1),
            self.decoder.output,
            tgt_out.flatten(),
            self.pad_id,
            label_smoothing=self.label_smoothing,
        )


def _coins(tgt_in: torch.Tensor, tf_ratio: float) -> torch.Tensor:
    """Per example and step, whether the gold token is the input (B, T); always at step 0 (``<sos>``)."""
    use_gold = torch.rand(tgt_in.shape, device=tgt_in.device) < tf_ratio
    use_gold[:, 0] = True
    return use_gold
