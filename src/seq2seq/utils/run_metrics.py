"""The metrics a run reports: the file they are written to, and which way each one is better."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"  # written into the run dir by train.py / eval.py at the end of a successful run
LOWER_IS_BETTER = ("loss", "ppl")  # metric names (the part after ``val/``, ``test/``…) where lower is better


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` (e.g. ``val/loss``, ``test/bleu``) is better: loss and perplexity."""
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def metric_mode(metric: str | None) -> str:
    """``min`` for a metric where lower is better, else ``max`` (Lightning's ``mode`` for ``monitor=metric``)."""
    return "min" if metric and lower_is_better(metric) else "max"


def recorded_run_metrics(ckpt_path: str | Path) -> dict[str, Any]:
    """The val/test metrics (with their sacreBLEU signatures) that the checkpoint's run recorded in its
    ``metrics.json`` (``<run>/checkpoints/x.ckpt`` → ``<run>/metrics.json``); empty when there is none."""
    path = Path(ckpt_path).resolve().parent.parent / METRICS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no run dir beside it, or no readable metrics there
        return {}
