"""Validation and test metrics, synced across processes by torchmetrics."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.text import CHRFScore, SacreBLEUScore


class Seq2SeqMetrics(nn.Module):
    """Accumulate one evaluation pass and compute its metrics.

    * ``loss``: mean token cross-entropy of the teacher-forced pass (non-pad tokens);
    * ``ppl``: ``exp(loss)``, the standard teacher-forced perplexity;
    * ``acc``: teacher-forced token accuracy;
    * ``bleu`` / ``chrf``: sacreBLEU (13a tokenization) / chrF on detokenized text, 0–100;
    * ``exact_match``: fraction of hypotheses equal to their reference.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loss_sum = SumMetric()
        self.correct = SumMetric()
        self.tokens = SumMetric()
        self.exact_match = MeanMetric()
        self.bleu = SacreBLEUScore(tokenize="13a")
        self.chrf = CHRFScore()

    def update(
        self,
        logits: torch.Tensor,
        tgt_out: torch.Tensor,
        pad_id: int,
        hypotheses: list[str],
        references: list[str],
    ) -> None:
        """Add a batch: teacher-forced ``logits`` (B, T, V) against ``tgt_out`` (B, T), and decoded text."""
        mask = tgt_out != pad_id  # (B, T)
        loss_sum = nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=pad_id, reduction="sum"
        )
        self.loss_sum.update(loss_sum)
        self.correct.update(((logits.argmax(-1) == tgt_out) & mask).sum())
        self.tokens.update(mask.sum())
        self.exact_match.update(torch.tensor([float(h == r) for h, r in zip(hypotheses, references)]))
        self.bleu.update(hypotheses, [[r] for r in references])
        self.chrf.update(hypotheses, [[r] for r in references])

    def compute(self) -> dict[str, float]:
        """Return the metrics of everything added since the last `reset`, as plain floats."""
        tokens = float(self.tokens.compute())
        loss = float(self.loss_sum.compute()) / max(tokens, 1.0)
        return {
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),
            "acc": float(self.correct.compute()) / max(tokens, 1.0),
            "bleu": 100.0 * float(self.bleu.compute()),
            "chrf": 100.0 * float(self.chrf.compute()),
            "exact_match": float(self.exact_match.compute()),
        }

    def reset(self) -> None:
        """Forget everything added so far."""
        for metric in self.children():
            metric.reset()
