"""Batches: padding encoded pairs into tensors (the batch order is `seq2seq.data.samplers`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID

# copies to these are blocking (Lightning's rule in lightning_fabric.utilities.apply_func; MPS for a race bug)
_BLOCKING_DEVICE_TYPES = ("cpu", "mps")


@dataclass
class Batch:
    """A padded batch of pairs; Lightning moves it to the device through :meth:`to`.

    Attributes:
        src: source ids followed by ``<eos>``, padded, ``(B, S)`` int64.
        src_lengths: true source lengths (``<eos>`` included, so >= 1), ``(B,)`` int64. They stay on the CPU,
            where packing needs them, so the training step never waits for a device-to-host copy.
        tgt_in: decoder inputs ``<sos> y1 … yn``, padded, ``(B, T)`` int64.
        tgt_out: decoder targets ``y1 … yn <eos>``, padded, ``(B, T)`` int64.
        src_text: the raw source sentences.
        tgt_text: the raw reference sentences (for BLEU on detokenized text).
        index: each pair's row in its split as read (the input order), ``(B,)`` int64 on the CPU; ``None`` for
            batches made outside a split.
        num_tokens: the target tokens of the batch (``<eos>`` included, padding not), counted on the CPU, so
            throughput is known without asking the device.
    """

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    src_text: list[str]
    tgt_text: list[str]
    index: Tensor | None = None
    num_tokens: int = 0

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> Batch:
        """A copy with every tensor but ``src_lengths`` and ``index`` on ``device``.

        Args:
            device: where to.
            non_blocking: ``None`` (what Lightning gets, as it passes ``non_blocking`` to plain tensors only):
                non-blocking to an accelerator, so a copy from pinned memory overlaps the host's work (kernels
                queued after it on the stream wait for it); blocking to the CPU or MPS, as Lightning does, where the
                values would otherwise be read before they arrive.
        """
        device = torch.device(device)
        if non_blocking is None:
            non_blocking = device.type not in _BLOCKING_DEVICE_TYPES
        move = {"device": device, "non_blocking": non_blocking}
        return replace(
            self,
            src=self.src.to(**move),
            tgt_in=self.tgt_in.to(**move),
            tgt_out=self.tgt_out.to(**move),
        )

    def pin_memory(self) -> Batch:
        """A copy in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return replace(
            self,
            src=self.src.pin_memory(),
            tgt_in=self.tgt_in.pin_memory(),
            tgt_out=self.tgt_out.pin_memory(),
        )


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into ``(B, L)`` int64 with ``L`` the longest; also return the lengths ``(B,)``."""
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)  # (B,)
    longest = int(lengths.max()) if len(sequences) else 0
    padded = torch.full((len(sequences), longest), pad_id, dtype=torch.long)  # (B, L)
    mask = torch.arange(longest) < lengths[:, None]  # (B, L), row-major order = concatenation order
    padded[mask] = torch.tensor([token for seq in sequences for token in seq], dtype=torch.long)
    return padded, lengths


def pad_source(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """Append ``<eos>`` to each source (so even an empty one has length 1) and pad: ``(B, S)``, ``(B,)``."""
    return pad_sequences([list(seq) + [EOS_ID] for seq in sequences], pad_id)


def collate(examples: Sequence[dict[str, Any]], pad_id: int = PAD_ID) -> Batch:
    """Pad examples (``src_ids``/``tgt_ids``: ids without specials; ``source``/``target``: text; ``index``)."""
    src, src_lengths = pad_source([ex["src_ids"] for ex in examples], pad_id)  # (B, S), (B,)
    tgt_in, _ = pad_sequences([[SOS_ID, *ex["tgt_ids"]] for ex in examples], pad_id)  # (B, T)
    tgt_out, _ = pad_sequences([[*ex["tgt_ids"], EOS_ID] for ex in examples], pad_id)  # (B, T)
    return Batch(
        src=src,
        src_lengths=src_lengths,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        src_text=[ex["source"] for ex in examples],
        tgt_text=[ex["target"] for ex in examples],
        index=torch.tensor([ex["index"] for ex in examples], dtype=torch.long) if "index" in examples[0] else None,
        num_tokens=sum(len(ex["tgt_ids"]) + 1 for ex in examples),
    )
