"""The metrics a run reports: the file they are written to, and which way each one is better."""

from __future__ import annotations

METRICS_FILE = "metrics.json"  # written into the run dir by train.py / eval.py at the end of a successful run
LOWER_IS_BETTER = ("loss", "ppl")  # metric names (the part after ``val/``, ``test/``…) where lower is better


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` (e.g. ``val/loss``, ``test/bleu``) is better: loss and perplexity."""
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def metric_mode(metric: str | None) -> str:
    """``min`` for a metric where lower is better, else ``max`` (Lightning's ``mode`` for ``monitor=metric``)."""
    return "min" if metric and lower_is_better(metric) else "max"
