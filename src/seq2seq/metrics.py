"""Validation and test metrics, synced across processes by torchmetrics.

BLEU and chrF are sacreBLEU's own: each batch adds sacreBLEU's sufficient statistics (n-gram match counts and
lengths) to a summed metric state, and the score is computed from the sums by sacreBLEU, exactly as
``sacrebleu.corpus_bleu`` / ``corpus_chrf`` score the whole corpus at once. (torchmetrics' ``SacreBLEUScore`` does
not smooth like sacreBLEU and its ``CHRFScore`` is chrF++ by default, with float32 statistics.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric as SacreMetric
from torch import nn
from torchmetrics import MeanMetric, Metric, SumMetric

from seq2seq import compat


class CorpusScore(Metric):
    """A sacreBLEU corpus score (0–100) accumulated as summed sufficient statistics, synced across processes.

    Args:
        scorer: the sacreBLEU metric object (``BLEU(…)``, ``CHRF(…)``) that extracts statistics and scores them.
    """

    full_state_update = False

    def __init__(self, scorer: SacreMetric) -> None:
        super().__init__()
        self.scorer = scorer
        # One probe pair gives the statistics' length; it also fixes the number of references (one) in the signature.
        num_stats = len(compat.segment_statistics(scorer, ["x"], ["x"])[0])
        self.add_state("stats", torch.zeros(num_stats, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hypotheses: Sequence[str], references: Sequence[str]) -> None:
        """Add hypotheses and their (single) references."""
        if not hypotheses:
            return
        per_sentence = compat.segment_statistics(self.scorer, hypotheses, references)
        self.stats += torch.tensor(per_sentence, dtype=torch.long).sum(0).to(self.stats.device)

    def compute(self) -> float:
        """The corpus score of everything added (over all processes)."""
        return float(compat.score_from_statistics(self.scorer, self.stats.tolist()).score)

    def signature(self) -> str:
        """sacreBLEU's signature of this score, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``."""
        return self.scorer.get_signature().format()


class Seq2SeqMetrics(nn.Module):
    """Accumulate one evaluation pass and compute its metrics.

    * ``loss``: mean token cross-entropy of the teacher-forced pass (non-pad tokens);
    * ``ppl``: ``exp(loss)``, the standard teacher-forced perplexity;
    * ``acc``: teacher-forced token accuracy;
    * ``bleu``: sacreBLEU on detokenized text, 13a tokenization, cased, exp smoothing, 0–100;
    * ``bleu_lc``: the same on lowercased text (what most Multi30k papers report);
    * ``chrf``: sacreBLEU's chrF (character 6-grams, no word n-grams, β=2), 0–100;
    * ``chrf++``: chrF++ (plus word 1- and 2-grams), 0–100;
    * ``exact_match``: fraction of hypotheses equal to their reference;
    * ``num_sentences``: sentences scored (over all processes).

    Args:
        lowercase: the data was lowercased before tokenizing (``data.lowercase``), so hypotheses are lowercase:
            references are lowercased too (as ``sacrebleu -lc`` does), for every score.
    """

    def __init__(self, lowercase: bool = False) -> None:
        super().__init__()
        self.lowercase = lowercase
        self.loss_sum = SumMetric()
        self.correct = SumMetric()
        self.tokens = SumMetric()
        self.sentences = SumMetric()
        self.exact_match = MeanMetric()
        self.scores = nn.ModuleDict(
            {
                "bleu": CorpusScore(BLEU(tokenize="13a", lowercase=lowercase)),
                "bleu_lc": CorpusScore(BLEU(tokenize="13a", lowercase=True)),
                "chrf": CorpusScore(CHRF(char_order=6, word_order=0, lowercase=lowercase)),
                "chrf++": CorpusScore(CHRF(char_order=6, word_order=2, lowercase=lowercase)),
            }
        )

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
        self.sentences.update(len(hypotheses))
        compared = [r.lower() for r in references] if self.lowercase else references
        self.exact_match.update(torch.tensor([float(h == r) for h, r in zip(hypotheses, compared)]))
        for score in self.scores.values():
            score.update(hypotheses, references)

    def compute(self) -> dict[str, float]:
        """Return the metrics of everything added since the last `reset`, as plain floats."""
        tokens = float(self.tokens.compute())
        loss = float(self.loss_sum.compute()) / max(tokens, 1.0)
        return {
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),
            "acc": float(self.correct.compute()) / max(tokens, 1.0),
            **{name: score.compute() for name, score in self.scores.items()},
            "exact_match": float(self.exact_match.compute()),
            "num_sentences": int(self.sentences.compute()),
        }

    def signatures(self) -> dict[str, str]:
        """sacreBLEU's signature of each BLEU/chrF figure, by metric name."""
        return {name: score.signature() for name, score in self.scores.items()}

    def reset(self) -> None:
        """Forget everything added so far."""
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()
