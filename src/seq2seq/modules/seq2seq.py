"""The encoder → context → decoder model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.modules.context import Bridge
from seq2seq.modules.decoder import RecurrentDecoder
from seq2seq.modules.encoder import RecurrentEncoder
from seq2seq.modules.rnn import CELLS, State, map_state


@dataclass
class Encoded:
    """What the decoder needs from the source: encoder outputs, their mask and the initial state."""

    memory: torch.Tensor  # (B, S, H_enc·dirs)
    src_mask: torch.Tensor  # (B, S), True at real tokens
    state: State  # (L_dec, B, H_dec), or (h, c)

    def index_select(self, index: torch.Tensor) -> Encoded:
        """Reorder or repeat sentences along the batch dimension (for beam search)."""
        return Encoded(
            self.memory.index_select(0, index),
            self.src_mask.index_select(0, index),
            map_state(self.state, lambda s: s.index_select(1, index)),
        )


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
        pad_id: padding token id.
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
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"unknown cell type {cell!r}: use model=rnn, model=lstm or model=gru")
        directions = 2 if bidirectional else 1
        decoder_hidden_size = decoder_hidden_size or hidden_size * directions
        decoder_num_layers = decoder_num_layers or num_layers
        self.pad_id = pad_id
        self.encoder = RecurrentEncoder(
            src_vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout, pad_id
        )
        self.bridge = Bridge(bridge, cell, hidden_size, num_layers, directions, decoder_hidden_size, decoder_num_layers)
        self.decoder = RecurrentDecoder(
            tgt_vocab_size, embedding_dim, decoder_hidden_size, decoder_num_layers, cell, dropout, pad_id
        )

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Encoded:
        """Encode ``src`` (B, S) and bridge the final state into the decoder's initial state."""
        memory, final_state = self.encoder(src, src_lengths)
        return Encoded(memory, src != self.pad_id, self.bridge(final_state))

    def decode_step(self, tokens: torch.Tensor, state: State, encoded: Encoded) -> tuple[torch.Tensor, State]:
        """One decoding step: ``tokens`` (B,) → logits (B, V) and the new state."""
        logits, state = self.decoder(tokens.unsqueeze(1), state, encoded.memory, encoded.src_mask)
        return logits.squeeze(1), state

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        tf_ratio: float = 1.0,
    ) -> torch.Tensor:
        """Return logits (B, T, V) for the target inputs ``tgt_in`` (B, T) = ``<sos> y1 … y_{T-1}``.

        At ``tf_ratio >= 1`` the decoder runs fused over all T steps. Below 1 it steps: the input
        at step t is the gold token with probability ``tf_ratio``, drawn per example and per step
        from torch's (seeded) generator, otherwise the model's own argmax at step t - 1.
        """
        encoded = self.encode(src, src_lengths)
        if tf_ratio >= 1.0:
            logits, _ = self.decoder(tgt_in, encoded.state, encoded.memory, encoded.src_mask)
            return logits  # (B, T, V)
        use_gold = torch.rand(tgt_in.shape, device=tgt_in.device) < tf_ratio  # (B, T)
        state, inputs, steps = encoded.state, tgt_in[:, 0], []
        for t in range(tgt_in.size(1)):
            logits_t, state = self.decode_step(inputs, state, encoded)  # (B, V)
            steps.append(logits_t)
            if t + 1 < tgt_in.size(1):
                inputs = torch.where(use_gold[:, t + 1], tgt_in[:, t + 1], logits_t.argmax(-1))
        return torch.stack(steps, dim=1)  # (B, T, V)
