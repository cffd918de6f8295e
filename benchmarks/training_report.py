"""The training benchmark's report: the markdown tables of `benchmarks/training.py`'s four sections, the
hardware line, and the targets met or not."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from machine import cpu_name
from training_models import VARIANTS

if TYPE_CHECKING:
    from training import EpochResult, GridRow, Job


def markdown_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    widths = [max(len(text) for text in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if a == "r" else "-" * (w + 2) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def format_grid(rows: list[GridRow]) -> str:
    """The grid table, notes on rows that could not run, and the parameter counts."""
    header = ["cell", "attention", "size", "ours", "tokens/s ours", "textbook", "tokens/s textbook", "speed-up"]
    header += ["peak ours", "peak textbook"]
    table = []
    for row in rows:
        ours_rate = f"{row.ours.rate:,.0f}" if row.ours else "not run"
        speedup = f"{row.speedup:.2f}x" if row.speedup else "-"
        tb = row.textbook
        table.append(
            [row.cell, row.attention, row.size, row.label, ours_rate, f"tf {tb.trainee.tf_ratio}", f"{tb.rate:,.0f}"]
            + [speedup, row.ours.memory if row.ours else "-", tb.memory]
        )
    lines = [markdown_table(header, table, "llllrlrrrr")]
    lines += [f"- {r.cell}/{r.attention}/{r.size} {r.variant}: {r.note}" for r in rows if r.note]
    counts = {}
    for row in rows:
        if row.ours is not None:
            counts.setdefault(f"{row.cell}/{row.attention}/{row.size}", (row.ours.parameters, row.textbook.parameters))
    if counts:
        text = "; ".join(f"{key} {a / 1e6:.1f}M vs {b / 1e6:.1f}M" for key, (a, b) in counts.items())
        lines.append(f"\nparameters (ours vs textbook): {text}")
    return "\n".join(lines)


def format_batch_scaling(result: list[tuple[int, Job]]) -> str:
    header = ["batch", "steps", "target tokens", "median s", "tokens/s", f"vs batch {result[0][0]}", "peak"]
    first = result[0][1].rate
    table = [
        [str(b), str(len(job.batches)), f"{job.tokens:,}", f"{job.median:.3f}", f"{job.rate:,.0f}"]
        + [f"{job.rate / first:.2f}x", job.memory]
        for b, job in result
    ]
    return markdown_table(header, table, "rrrrrrr")


def format_length_scaling(result: list[tuple[str, int, Job]]) -> str:
    header = ["model", "length", "steps", "median s", "µs per target token", "vs shortest", "peak"]
    shortest: dict[str, float] = {}
    table = []
    for name, length, job in result:
        per_token = job.median / job.tokens * 1e6
        shortest.setdefault(name, per_token)
        label = "textbook tf 1.0" if name == "textbook" else f"ours {VARIANTS[name].label}"
        table.append(
            [label, str(length), str(len(job.batches)), f"{job.median:.3f}", f"{per_token:.2f}"]
            + [f"{per_token / shortest[name]:.2f}x", job.memory]
        )
    return markdown_table(header, table, "lrrrrrr")


def format_epoch(result: EpochResult) -> str:
    header = ["loop", "s", "min-max s", "tokens/s", "overhead"]
    bare = statistics.median(result.bare)
    rows = [("bare loop (DataLoader + model + Adam)", result.bare), ("Trainer.fit, whole call", result.fit)]
    rows.append(("Trainer.fit, first batch to epoch end", result.loop))
    table = []
    for name, times in rows:
        median = statistics.median(times)
        overhead = "-" if times is result.bare else f"{(median - bare) / median:.1%}"
        spread = f"{min(times):.2f}-{max(times):.2f}"
        table.append([name, f"{median:.2f}", spread, f"{result.tokens / median:,.0f}", overhead])
    return markdown_table(header, table, "lrrrr") + "\n\noverhead = (Lightning - bare) / Lightning"


def hardware(device: torch.device) -> str:
    """CPU model and count, torch version and threads (and the GPU when used)."""
    cpu = cpu_name()
    text = f"CPU: {cpu} ({os.cpu_count()} cores) | torch {torch.__version__} | threads {torch.get_num_threads()}"
    text += f" | OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    if device.type == "cuda":
        text += f" | GPU: {torch.cuda.get_device_name(device)} | CUDA {torch.version.cuda}"
        text += f" | cuDNN {torch.backends.cudnn.version()}"
    return text


GOALS = {"cuda": {"tf1": 5.0, "exact": 2.0, "parallel": 4.0}, "cpu": {"tf1": 2.0, "exact": 1.3}}


def targets(rows: list[GridRow], device: torch.device, epoch: EpochResult | None) -> Iterator[str]:
    """The issue's targets, met or not, from the measured rows."""
    for name, goal in GOALS[device.type].items():
        speedups = sorted((r.speedup, f"{r.cell}/{r.attention}/{r.size}") for r in rows if r.variant == name and r.ours)
        if not speedups:
            continue
        (low, low_at), (high, high_at) = speedups[0], speedups[-1]
        met = sum(s >= goal for s, _ in speedups)
        verdict = "met" if met == len(speedups) else f"NOT met (met in {met} of {len(speedups)} configurations)"
        yield (
            f"ours {VARIANTS[name].label} / textbook: {low:.2f}x ({low_at}) to {high:.2f}x ({high_at}); "
            f"target >= {goal}x: {verdict}"
        )
    if epoch is not None:
        verdict = "met" if epoch.overhead <= 0.10 else "NOT met"
        yield f"Lightning overhead: {epoch.overhead:.1%} of the epoch's time (target <= 10%): {verdict}"
