"""The textbook RNN seq2seq model: the baseline ``benchmarks/training.py`` measures our model against.

Written the way the PyTorch tutorial and Ben Trevett's *pytorch-seq2seq* notebooks (1: LSTM encoder-decoder,
3: Bahdanau attention, 4: masking) write it, because that is the code a user would otherwise copy:

* the encoder is ``nn.Embedding`` + ``nn.GRU``/``nn.LSTM`` over the **padded** batch (no packing: the RNN runs
  over the padding and its final state is taken after it);
* the decoder is a stack of ``nn.GRUCell``/``nn.LSTMCell`` (one per layer) called once per target step from a
  Python loop, writing each step's logits into a preallocated ``torch.zeros(B, T, V)``;
* teacher forcing flips **one coin per step** for the whole batch (``random.random() < ratio``); the input of
  the next step is the gold token or the batch's argmax;
* Bahdanau attention is computed per step as notebook 3 does: the decoder state is repeated over the source,
  concatenated with every encoder output, ``energy = tanh(W [s; h_j])``, ``scores = v^T energy``, masked
  softmax, weighted sum; the context enters the RNN input next to the embedding and the output layer reads
  ``[s_t; context; embedding]``;
* everything in fp32.

Sizes follow `seq2seq.modules.Seq2Seq` as far as the architecture allows: decoder hidden size = encoder hidden
size × directions, decoder depth = encoder depth, the encoder's final state goes through ``tanh(Linear)``
per layer (directions concatenated; a second projection for an LSTM's cell state), attention size = decoder
hidden size. The one structural difference in parameters is the attention's ``W``: one matrix over
``[s; h_j]`` here, the same number of weights as our separate query and key projections.
"""

from __future__ import annotations

import random

import torch
from torch import nn
from torch.nn import functional as F

CELLS = {"gru": (nn.GRU, nn.GRUCell), "lstm": (nn.LSTM, nn.LSTMCell)}

# Per layer: h (B, H) for a GRU, the pair (h, c) for an LSTM.
LayerState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class TextbookEncoder(nn.Module):
    """Embedding → dropout → multi-layer (bi)GRU/LSTM over the padded batch (batch first)."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        cell: str,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        rnn_class = CELLS[cell][0]
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = rnn_class(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """``src`` (B, S) → outputs (B, S, H·dirs) and the final state (L·dirs, B, H) (or (h, c))."""
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        outputs, hidden = self.rnn(embedded)  # runs over the padding too
        return outputs, hidden


class TextbookAttention(nn.Module):
    """Bahdanau attention, notebook 3/4 style: ``v^T tanh(W [s; h_j])``, masked softmax over the source."""

    def __init__(self, memory_size: int, decoder_hidden_size: int) -> None:
        super().__init__()
        self.attn = nn.Linear(memory_size + decoder_hidden_size, decoder_hidden_size)
        self.v = nn.Linear(decoder_hidden_size, 1, bias=False)

    def forward(self, hidden: torch.Tensor, encoder_outputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` (B, H_dec), ``encoder_outputs`` (B, S, M), ``mask`` (B, S) → weights (B, S)."""
        src_len = encoder_outputs.shape[1]
        hidden = hidden.unsqueeze(1).repeat(1, src_len, 1)  # (B, S, H_dec)
        energy = torch.tanh(self.attn(torch.cat((hidden, encoder_outputs), dim=2)))  # (B, S, H_dec)
        attention = self.v(energy).squeeze(2)  # (B, S)
        attention = attention.masked_fill(mask == 0, -1e10)
        return F.softmax(attention, dim=1)


class TextbookDecoder(nn.Module):
    """One decoder step: embedding → (attention) → a stack of RNN cells → output layer."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        cell: str,
        dropout: float,
        memory_size: int,
        attention: bool,
    ) -> None:
        super().__init__()
        cell_class = CELLS[cell][1]
        self.is_lstm = cell == "lstm"
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.attention = TextbookAttention(memory_size, hidden_size) if attention else None
        input_size = embedding_dim + (memory_size if attention else 0)
        self.cells = nn.ModuleList(
            [cell_class(input_size if layer == 0 else hidden_size, hidden_size) for layer in range(num_layers)]
        )
        output_size = hidden_size + (memory_size + embedding_dim if attention else 0)
        self.fc_out = nn.Linear(output_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, input: torch.Tensor, state: list[LayerState], encoder_outputs: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[LayerState]]:
        """``input`` (B,) token ids, ``state`` one entry per layer → logits (B, V) and the new state."""
        embedded = self.dropout(self.embedding(input))  # (B, E)
        rnn_input = embedded
        if self.attention is not None:
            top = state[-1][0] if self.is_lstm else state[-1]  # (B, H_dec): the previous top-layer state
            a = self.attention(top, encoder_outputs, mask)  # (B, S)
            weighted = torch.bmm(a.unsqueeze(1), encoder_outputs).squeeze(1)  # (B, M)
            rnn_input = torch.cat((embedded, weighted), dim=1)  # (B, E + M)
        new_state = []
        x = rnn_input
        for layer, cell in enumerate(self.cells):
            layer_state = cell(x, state[layer])
            new_state.append(layer_state)
            x = layer_state[0] if self.is_lstm else layer_state  # (B, H_dec)
            if layer + 1 < len(self.cells):
                x = self.dropout(x)
        if self.attention is not None:
            prediction = self.fc_out(torch.cat((x, weighted, embedded), dim=1))  # (B, V)
        else:
            prediction = self.fc_out(self.dropout(x))  # (B, V)
        return prediction, new_state


class TextbookSeq2Seq(nn.Module):
    """The textbook encoder-decoder; the arguments mirror `seq2seq.modules.Seq2Seq`'s.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes.
        cell: ``gru`` or ``lstm``.
        embedding_dim: token embedding size, source and target.
        hidden_size: encoder hidden size per direction (decoder: × directions).
        num_layers: encoder and decoder depth.
        bidirectional: bidirectional encoder.
        dropout: dropout on embeddings and between layers (and before the output layer without attention).
        attention: Bahdanau attention (notebook 3) or none (notebook 1).
        pad_id: padding id, for the attention mask.
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
        attention: bool = False,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}: use gru or lstm")
        self.directions = 2 if bidirectional else 1
        self.num_layers = num_layers
        self.is_lstm = cell == "lstm"
        self.pad_id = pad_id
        memory_size = hidden_size * self.directions
        decoder_hidden_size = memory_size
        self.encoder = TextbookEncoder(
            src_vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout
        )
        self.fc_hidden = nn.Linear(memory_size, decoder_hidden_size)
        self.fc_cell = nn.Linear(memory_size, decoder_hidden_size) if self.is_lstm else None
        self.decoder = TextbookDecoder(
            tgt_vocab_size, embedding_dim, decoder_hidden_size, num_layers, cell, dropout, memory_size, attention
        )

    def _bridge(self, hidden: torch.Tensor, fc: nn.Linear) -> list[torch.Tensor]:
        """(L·dirs, B, H) → per layer tanh(fc([forward; backward])) (B, H_dec)."""
        layers = hidden.view(self.num_layers, self.directions, hidden.size(1), hidden.size(2))  # (L, dirs, B, H)
        return [torch.tanh(fc(torch.cat(list(layer), dim=1))) for layer in layers]

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor | None, tgt_in: torch.Tensor, tf_ratio: float = 1.0
    ) -> torch.Tensor:
        """Logits (B, T, V) for ``tgt_in`` (B, T) = ``<sos> y1 …``; ``src_lengths`` is ignored (no packing)."""
        batch_size, tgt_len = tgt_in.shape
        outputs = torch.zeros(batch_size, tgt_len, self.decoder.fc_out.out_features, device=src.device)
        encoder_outputs, hidden = self.encoder(src)
        if self.is_lstm:
            state = list(zip(self._bridge(hidden[0], self.fc_hidden), self._bridge(hidden[1], self.fc_cell)))
        else:
            state = self._bridge(hidden, self.fc_hidden)
        mask = src != self.pad_id  # (B, S)
        input = tgt_in[:, 0]  # <sos>
        for t in range(tgt_len):
            output, state = self.decoder(input, state, encoder_outputs, mask)
            outputs[:, t] = output
            teacher_force = random.random() < tf_ratio
            top1 = output.argmax(1)
            if t + 1 < tgt_len:
                input = tgt_in[:, t + 1] if teacher_force else top1
        return outputs
