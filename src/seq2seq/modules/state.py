"""What flows between encoder, decoder and the decoding loops: the encoded source and the decoder state."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.modules.rnn import State, map_state


@dataclass
class DecoderState:
    """The decoder's recurrent state, plus the previous attentional vector for Luong input feeding."""

    rnn: State  # (L_dec, B, H_dec), or (h, c)
    feed: torch.Tensor | None = None  # (B, H_dec)

    def index_select(self, index: torch.Tensor) -> DecoderState:
        """Reorder or repeat sentences along the batch dimension (for beam search)."""
        return DecoderState(
            map_state(self.rnn, lambda s: s.index_select(1, index)),
            None if self.feed is None else self.feed.index_select(0, index),
        )

    def top_hidden(self) -> torch.Tensor:
        """The top layer's hidden state h (B, H_dec): the attention query of the next step."""
        h = self.rnn[0] if isinstance(self.rnn, tuple) else self.rnn
        return h[-1]


@dataclass
class Encoded:
    """What the decoder needs from the source: encoder outputs, their mask, attention keys, initial state."""

    memory: torch.Tensor  # (B, S, H_enc·dirs)
    src_mask: torch.Tensor  # (B, S), True at real tokens
    state: DecoderState
    keys: torch.Tensor | None = None  # (B, S, A): the source part of the attention score, if any

    def index_select(self, index: torch.Tensor) -> Encoded:
        """Reorder or repeat sentences along the batch dimension (for beam search)."""
        return Encoded(
            self.memory.index_select(0, index),
            self.src_mask.index_select(0, index),
            self.state.index_select(index),
            None if self.keys is None else self.keys.index_select(0, index),
        )
