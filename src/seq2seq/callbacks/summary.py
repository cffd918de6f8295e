"""Multirun bookkeeping: a failing job is recorded and the sweep goes on; at the end, one summary of all jobs."""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from seq2seq.utils.cli import atomic_open, user_error, write_text_atomic
from seq2seq.utils.run_metrics import METRICS_FILE, lower_is_better
from seq2seq.utils.tables import markdown_table

log = logging.getLogger("seq2seq")

ERROR_FILE = "error.txt"  # written into a failed job's run dir
JOB_FILE = "job.json"  # each multirun job's status, overrides and wall time


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _one_line(exception: BaseException) -> str:
    """The user-facing message behind ``exception`` (see `user_errors`), else its type and text on one line."""
    error = user_error(exception)
    if error is not None:
        return str(error)
    text = " ".join(str(exception).split())
    return f"{type(exception).__name__}: {text}" if text else type(exception).__name__


@contextmanager
def keep_sweeping() -> Iterator[None]:
    """In a multirun, a job that raises writes ``error.txt`` (message, then traceback) into its run dir and prints
    one ``error: …`` line instead of ending the sweep; outside a multirun the exception goes on."""
    try:
        yield
    except Exception as exception:
        if not _in_multirun():
            raise
        hydra = HydraConfig.get()
        path = Path(hydra.runtime.output_dir) / ERROR_FILE
        message = _one_line(exception)
        details = "".join(traceback.format_exception(exception))
        write_text_atomic(path, f"{message}\n\n{details}")
        log.debug("job failed", exc_info=exception)
        print(f"error: job {hydra.job.num} failed: {message} (details: {path})", file=sys.stderr)


def job_failed(config: DictConfig, job_return: JobReturn) -> bool:
    """Whether a job raised, or recorded its failure in ``error.txt`` (see `keep_sweeping`)."""
    if job_return.status == JobStatus.FAILED:
        return True
    return (Path(config.hydra.runtime.output_dir) / ERROR_FILE).is_file()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class MultirunSummary(HydraCallback):
    """Hydra callback: each multirun job writes ``job.json`` (status, overrides, wall time); at the end of the
    multirun, ``summary.csv`` and ``summary.md`` at its root hold one row per job with its final ``val/*`` and
    ``test/*`` metrics, best first by ``optimized_metric`` (lower is better for loss and ppl), failed or unreadable
    jobs last.
    """

    def __init__(self) -> None:
        self._started = time.time()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.time()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or rank_zero_only.rank != 0:  # one record per job, not per task
            return
        output_dir = Path(config.hydra.runtime.output_dir)
        error = None
        if job_return.status == JobStatus.FAILED:
            try:
                _ = job_return.return_value  # re-raises the job's exception
            except Exception as exception:
                error = _one_line(exception)
        elif (output_dir / ERROR_FILE).is_file():
            error = (output_dir / ERROR_FILE).read_text(encoding="utf-8").splitlines()[0]
        record = {
            "job": config.hydra.job.num,
            "overrides": list(job_return.overrides or []),
            "status": "failed" if error is not None else "completed",
            "error": error,
            "wall_time_s": round(time.time() - self._started, 3),
            "optimized_metric": config.get("optimized_metric"),
        }
        write_text_atomic(output_dir / JOB_FILE, json.dumps(record, indent=2) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        rows = collect_jobs(root)
        if not rows:
            return
        write_summary(root, rows)
        failed = sum(row["status"] != "completed" for row in rows)
        log.info("summary of %d jobs (%d failed or unreadable): %s", len(rows), failed, root / "summary.md")


def _read_json(path: Path, root: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in ``path``, or None and why it cannot be read (logged as a warning)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
    except (OSError, ValueError) as exception:
        reason = f"{path.name} is unreadable ({type(exception).__name__}: {exception})"
        log.warning("summary: %s is unreadable, its job is marked so: %s", path.relative_to(root), exception)
        return None, reason
    return value, None


def _unreadable_job(job_dir: Path, reason: str) -> dict[str, Any]:
    """A row for a job whose ``job.json`` cannot be read: its number from its dir name (``hydra.job.num``)."""
    return {
        "job": int(job_dir.name) if job_dir.name.isdigit() else -1,
        "overrides": [],
        "status": "unreadable",
        "error": reason,
        "wall_time_s": None,
        "optimized_metric": None,
    }


def collect_jobs(root: Path) -> list[dict[str, Any]]:
    """One row per job dir under ``root`` (those with a ``job.json``), best first.

    A job whose ``job.json`` or ``metrics.json`` cannot be read (a write cut short) gets a row with status
    ``unreadable`` saying which file, and a warning; the other jobs are summarized as usual.
    """
    rows = []
    for path in root.rglob(JOB_FILE):
        record, reason = _read_json(path, root)
        if record is None or not {"job", "status", "overrides"} <= set(record):
            record = _unreadable_job(path.parent, reason or f"{JOB_FILE} lacks job, status or overrides")
        metrics_path = path.parent / METRICS_FILE
        metrics: dict[str, Any] = {}
        if metrics_path.is_file() and record["status"] != "unreadable":
            metrics, reason = _read_json(metrics_path, root)
            if metrics is None:
                metrics = {}
                record.update(status="unreadable", error=reason)
        if not metrics and record["status"] == "completed":
            record.update(status="failed", error=f"no {METRICS_FILE} written")
        metrics = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/")) and _number(v) is not None}
        rows.append({**record, "dir": str(path.parent.relative_to(root)), "metrics": metrics})
    # overrides shared by every job say nothing about a row: show what varies
    shared = set.intersection(*(set(row["overrides"]) for row in rows)) if len(rows) > 1 else set()
    for row in rows:
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in shared)
    return sorted(rows, key=_rank)


def _rank(row: dict[str, Any]) -> tuple:
    name = row.get("optimized_metric")
    value = _number(row["metrics"].get(name)) if name else None
    if row["status"] != "completed" or value is None or math.isnan(value):
        return (1, 0.0, row["job"])
    sign = 1.0 if lower_is_better(name) else -1.0
    return (0, sign * value, row["job"])


def write_summary(root: Path, rows: list[dict[str, Any]]) -> None:
    """``summary.csv`` and ``summary.md`` at ``root``: the optimized metric first, then the others by name."""
    optimized = [name for name in dict.fromkeys(row.get("optimized_metric") for row in rows) if name]
    names = sorted({name for row in rows for name in row["metrics"]})
    names = [name for name in optimized if name in names] + [name for name in names if name not in optimized]
    columns = ["job", "status", "overrides", *names, "wall_time_s", "error", "dir"]
    table = [[row["job"], row["status"], row["overrides"]] for row in rows]
    for line, row in zip(table, rows):
        line += [row["metrics"].get(name) for name in names]
        line += [row["wall_time_s"], row["error"] or "", row["dir"]]

    with atomic_open(root / "summary.csv", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows([["" if value is None else value for value in line] for line in table])
    write_text_atomic(root / "summary.md", markdown_table(columns, table) + "\n")
