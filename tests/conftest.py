"""Shared fixtures: run the entry points as a user would, in a temporary log dir."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """Under pytest-xdist (``make test``: one worker per core), each worker's in-process torch uses one thread, so
    the workers do not oversubscribe the cores. Set before any test module imports torch."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")

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

# The reverse task with Luong attention, learnt in about 15 s of CPU: served by the serving and page tests, whose
# heatmap then shows the reversal (the anti-diagonal).
TINY_ATTENTION = [
    "experiment=reverse",
    "trainer=cpu",
    "logger=csv",
    "attention=luong",
    "data.source.num_train=2000",
    "data.source.num_val=64",
    "data.source.num_test=64",
    "data.source.max_length=6",
    "data.batch_size=32",
    "model.embedding_dim=32",
    "model.hidden_size=64",
    "trainer.max_epochs=4",
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


@contextmanager
def running_server(ckpt, *overrides: str, timeout: float = 300) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python src/serve.py ckpt_path=ckpt port=0 overrides…`` running, with its base URL once it answers /health;
    stopped (SIGTERM, then SIGKILL) afterwards. Its stderr is at ``process.stderr_path``."""
    cmd = [sys.executable, str(ROOT / "src" / "serve.py"), f"ckpt_path={ckpt}", "port=0", "device=cpu", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(Path(str(ckpt)).parent.parent / f"serve-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    process.stderr_path = log.name
    try:
        url, deadline = None, time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if url is None:
                found = re.search(r"serving on (http://\S+/)", Path(log.name).read_text())
                url = found.group(1) if found else None
            if url:
                try:
                    with urllib.request.urlopen(url + "health", timeout=5) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"the server did not start:\n{Path(log.name).read_text()[-4000:]}")
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def run_dirs(log_dir: Path, task: str) -> list[Path]:
    """The run dirs made under ``log_dir`` for ``task`` (train or eval), oldest first."""
    return sorted((log_dir / task / "runs").glob("*"))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def train_once(tmp_path_factory, name: str, overrides: list[str]) -> Path:
    """Train with ``overrides`` in a fresh log dir (its own data cache) and return the run dir."""
    log_dir = tmp_path_factory.mktemp(name)
    run_cli("train", *overrides, f"data.cache_dir={log_dir}/cache", log_dir=log_dir)
    (run_dir,) = run_dirs(log_dir, "train")
    return run_dir


@pytest.fixture(scope="session")
def reverse_run(tmp_path_factory) -> Path:
    """One short training run on the reverse task, shared by the tests that read its outputs."""
    return train_once(tmp_path_factory, "logs", TINY_REVERSE)


@pytest.fixture(scope="session")
def attention_run(tmp_path_factory) -> Path:
    """One short training run of a model with attention on the reverse task (the serving tests' model)."""
    return train_once(tmp_path_factory, "logs_attention", TINY_ATTENTION)
