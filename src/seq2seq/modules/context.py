"""The context: the encoder's final state bridged into the decoder's initial state."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.modules.rnn import State

BRIDGES = ("linear", "copy", "zeros")


class Bridge(nn.Module):
    """Map an encoder final state (L_enc·dirs, B, H_enc) to a decoder initial state (L_dec, B, H_dec).

    The two directions of a bidirectional encoder are concatenated per layer, giving
    (L_enc, B, dirs·H_enc). Decoder layer ``i`` reads encoder layer ``i + L_enc - L_dec``
    clamped to ``[0, L_enc - 1]``: layers are aligned from the top, so a shallower decoder reads
    the top encoder layers and a deeper decoder repeats the bottom one. Then:

    * ``linear``: ``tanh(W s + b)`` per layer, one projection for h and one for an LSTM's c;
    * ``copy``: the state unchanged (needs dirs·H_enc == H_dec);
    * ``zeros``: no context at all (the decoder starts from zeros).
    """

    def __init__(
        self,
        mode: str,
        cell: str,
        encoder_hidden_size: int,
        encoder_num_layers: int,
        encoder_directions: int,
        decoder_hidden_size: int,
        decoder_num_layers: int,
    ) -> None:
        super().__init__()
        if mode not in BRIDGES:
            raise ConfigError(f"unknown bridge {mode!r}: use model.bridge=linear, copy or zeros")
        joined_size = encoder_hidden_size * encoder_directions
        if mode == "copy" and joined_size != decoder_hidden_size:
            raise ConfigError(
                f"model.bridge=copy needs encoder hidden × directions ({joined_size}) == decoder hidden "
                f"({decoder_hidden_size}): use model.bridge=linear or matching sizes"
            )
        self.mode = mode
        self.is_lstm = cell == "lstm"
        self.encoder_directions = encoder_directions
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_layers = decoder_num_layers
        offset = encoder_num_layers - decoder_num_layers
        layer_index = torch.arange(decoder_num_layers).add(offset).clamp(0, encoder_num_layers - 1)
        self.register_buffer("layer_index", layer_index, persistent=False)
        if mode == "linear":
            self.project_h = nn.Linear(joined_size, decoder_hidden_size)
            self.project_c = nn.Linear(joined_size, decoder_hidden_size) if self.is_lstm else None

    def _join(self, state: torch.Tensor) -> torch.Tensor:
        """(L·dirs, B, H) → (L_dec, B, dirs·H): directions side by side, layers aligned from the top."""
        layers_dirs, batch, hidden = state.shape
        state = state.view(layers_dirs // self.encoder_directions, self.encoder_directions, batch, hidden)
        state = state.permute(0, 2, 1, 3).reshape(-1, batch, self.encoder_directions * hidden)  # (L, B, dirs·H)
        return state.index_select(0, self.layer_index)  # (L_dec, B, dirs·H)

    def forward(self, encoder_state: State) -> State:
        """Return the decoder's initial state: (L_dec, B, H_dec), or the pair (h, c) for an LSTM."""
        h = encoder_state[0] if self.is_lstm else encoder_state
        if self.mode == "zeros":
            zeros = h.new_zeros(self.decoder_num_layers, h.size(1), self.decoder_hidden_size)
            return (zeros, zeros.clone()) if self.is_lstm else zeros
        h = self._join(h)
        if self.mode == "linear":
            h = torch.tanh(self.project_h(h))
        if not self.is_lstm:
            return h.contiguous()
        c = self._join(encoder_state[1])
        if self.mode == "linear":
            c = torch.tanh(self.project_c(c))
        return h.contiguous(), c.contiguous()
