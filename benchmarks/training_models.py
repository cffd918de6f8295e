"""The training benchmark's model variants: the sizes and training variants of `benchmarks/training.py`'s rows,
and one training step of our `Seq2Seq` or of the textbook model (``benchmarks/textbook.py``) on a batch."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from textbook import TextbookSeq2Seq
from torch import nn
from torch.nn import functional as F

from seq2seq.data.batching import Batch
from seq2seq.data.tokenizers import PAD_ID
from seq2seq.modules import Seq2Seq

SRC_VOCAB, TGT_VOCAB = 8000, 6000  # about Multi30k's de/en word vocabularies (min_freq 2)
CLIP_NORM = 1.0  # conf/trainer's gradient_clip_val
LR = 1e-3  # conf/train.yaml's Adam
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Size:
    """A model size, the same for our model and the textbook one."""

    embedding_dim: int
    hidden_size: int
    num_layers: int
    bidirectional: bool


SIZES = {
    "small": Size(embedding_dim=256, hidden_size=512, num_layers=1, bidirectional=False),
    "large": Size(embedding_dim=512, hidden_size=1024, num_layers=2, bidirectional=True),
}


@dataclass(frozen=True)
class Variant:
    """How our model is trained in one row; it is compared with the textbook model at ``tf_ratio``."""

    label: str
    tf_ratio: float
    tf_mode: str = "exact"
    bf16: bool = False
    compile: bool = False


VARIANTS = {
    "tf1": Variant("tf 1.0", 1.0),
    "exact": Variant("tf 0.5 exact", 0.5),
    "parallel": Variant("tf 0.5 parallel", 0.5, tf_mode="parallel"),
    "bf16": Variant("tf 1.0 bf16", 1.0, bf16=True),
    "bf16-exact": Variant("tf 0.5 exact bf16", 0.5, bf16=True),
    "bf16-parallel": Variant("tf 0.5 parallel bf16", 0.5, tf_mode="parallel", bf16=True),
    "compile": Variant("tf 1.0 compiled", 1.0, compile=True),
}


class Trainee:
    """A model, its Adam optimizer, and how one training step calls the model.

    Args:
        model: our `Seq2Seq`, whose loss is ``model.loss(src, src_lengths, tgt_in, tgt_out, tf_ratio=…, **kwargs)``
            as in training, or `TextbookSeq2Seq`, called as ``model(src, src_lengths, tgt_in, tf_ratio=…)`` →
            logits (B, T, V) followed by ``F.cross_entropy``.
        tf_ratio: the teacher-forcing ratio.
        kwargs: further forward arguments (``tf_mode``).
        bf16: forward and loss under CUDA bf16 autocast (weights, gradients and Adam stay fp32).
    """

    def __init__(self, model: nn.Module, tf_ratio: float, kwargs: dict | None = None, bf16: bool = False) -> None:
        self.model = model.train()
        self.tf_ratio = tf_ratio
        self.kwargs = kwargs or {}
        self.bf16 = bf16
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.parameters, lr=LR)

    def step(self, batch: Batch) -> torch.Tensor:
        """Forward, mean cross-entropy over the non-pad targets, backward, clip, Adam step; returns the loss."""
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:
            inputs = (batch.src, batch.src_lengths, batch.tgt_in)
            if isinstance(self.model, Seq2Seq):  # ours: the loss the LightningModule's training step computes
                loss = self.model.loss(*inputs, batch.tgt_out, tf_ratio=self.tf_ratio, **self.kwargs)
            else:
                logits = self.model(*inputs, tf_ratio=self.tf_ratio, **self.kwargs)
                loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, CLIP_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def build_ours(
    cell: str,
    attention: str,
    size: Size,
    variant: Variant,
    src_vocab: int = SRC_VOCAB,
    tgt_vocab: int = TGT_VOCAB,
    dropout: float = 0.2,
    seed: int = 0,
    device: torch.device = CPU,
) -> Trainee:
    """Our `Seq2Seq` for this configuration (``attention``: ``none`` or a kind such as ``bahdanau``) and variant,
    on ``device``; seeded, so every variant starts from the same weights."""
    torch.manual_seed(seed)
    extra: dict[str, Any] = {} if attention == "none" else {"attention": {"kind": attention}}
    if variant.compile:
        extra["compile"] = True  # model.compile=true: torch.compile of the training forward, dynamic shapes
    model: nn.Module = Seq2Seq(
        src_vocab,
        tgt_vocab,
        cell=cell,
        embedding_dim=size.embedding_dim,
        hidden_size=size.hidden_size,
        num_layers=size.num_layers,
        bidirectional=size.bidirectional,
        dropout=dropout,
        pad_id=PAD_ID,
        **extra,
    ).to(device)
    kwargs = {"tf_mode": variant.tf_mode} if variant.tf_mode != "exact" else {}
    return Trainee(model, variant.tf_ratio, kwargs, bf16=variant.bf16)


def build_textbook(
    cell: str,
    attention: str,
    size: Size,
    tf_ratio: float,
    src_vocab: int = SRC_VOCAB,
    tgt_vocab: int = TGT_VOCAB,
    dropout: float = 0.2,
    seed: int = 0,
    device: torch.device = CPU,
) -> Trainee:
    """The textbook model for this configuration (fp32) on ``device``, seeded."""
    if attention not in ("none", "bahdanau"):
        raise ValueError(f"the textbook model has no {attention!r} attention: use none or bahdanau")
    torch.manual_seed(seed)
    model = TextbookSeq2Seq(
        src_vocab,
        tgt_vocab,
        cell=cell,
        embedding_dim=size.embedding_dim,
        hidden_size=size.hidden_size,
        num_layers=size.num_layers,
        bidirectional=size.bidirectional,
        dropout=dropout,
        attention=attention == "bahdanau",
        pad_id=PAD_ID,
    ).to(device)
    return Trainee(model, tf_ratio)
