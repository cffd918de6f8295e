"""Shared fixtures: run the entry points as a user would, in a temporary log dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A reverse task small enough for a CPU test, big enough to show learning.
TINY_REVERSE = [
    "experiment=reverse",
    "trainer=cpu",
    "logger=csv",
    "data.source.num_train=4000",
    "data.source.num_val=200",
    "data.source.num_test=200",
    "data.source.max_length=5",
    "data.batch_size=32",
    "model.embedding_dim=32",
    "model.hidden_size=128",
    "trainer.max_epochs=6",
    "trainer.enable_progress_bar=false",
]

# A few seconds per job: the reverse task at its smallest, one short epoch (sweeps and tracking tests).
TINY_JOB = [
    "experiment=reverse",
    "trainer=cpu",
    "data.source.num_train=96",
    "data.source.num_val=32",
    "data.source.num_test=32",
    "data.source.max_length=5",
    "data.batch_size=32",
    "model.embedding_dim=8",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
]


def run_cli(
    script: str, *overrides: str, log_dir: Path, check: bool = True, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python src/<script>.py overrides…`` with its logs under ``log_dir``."""
    cmd = [sys.executable, str(ROOT / "src" / f"{script}.py"), f"paths.log_dir={log_dir}/", *overrides]
    result = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        # tiny models: one thread is as fast, and a busy CI machine cannot be oversubscribed by it
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def translate(ckpt, text: str, *overrides: str) -> subprocess.CompletedProcess:
    """Pipe ``text`` into ``python src/translate.py ckpt_path=ckpt overrides…``."""
    cmd = [sys.executable, str(ROOT / "src" / "translate.py"), f"ckpt_path={ckpt}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, input=text, capture_output=True, text=True, timeout=300, env=env)


def run_dirs(log_dir: Path, task: str) -> list[Path]:
    """The run dirs made under ``log_dir`` for ``task`` (train or eval), oldest first."""
    return sorted((log_dir / task / "runs").glob("*"))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def reverse_run(tmp_path_factory) -> Path:
    """One short training run on the reverse task, shared by the tests that read its outputs."""
    log_dir = tmp_path_factory.mktemp("logs")
    run_cli("train", *TINY_REVERSE, f"data.cache_dir={log_dir}/cache", log_dir=log_dir)
    (run_dir,) = run_dirs(log_dir, "train")
    return run_dir
