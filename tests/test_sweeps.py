"""Sweeps and scale-out: multirun summaries, failed jobs, Optuna, the submitit launchers, DDP metrics, SLURM errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, TINY_JOB, read_metrics, run_cli, run_dirs
from hydra import compose, initialize_config_dir

from seq2seq.callbacks.summary import collect_jobs, write_summary

TINY = [*TINY_JOB, "logger=csv"]


def multirun(*overrides: str, log_dir: Path, env: dict | None = None, **kwargs):
    """``python src/train.py overrides… -m`` (Hydra takes the flag after the overrides, not between them).

    One torch thread per job: fastest for these tiny models, and a busy machine cannot oversubscribe it.
    """
    env = {"OMP_NUM_THREADS": "1", **(env or {})}
    return run_cli("train", *overrides, "-m", log_dir=log_dir, env=env, **kwargs)


def multirun_dir(log_dir: Path) -> Path:
    (root,) = (log_dir / "train" / "multiruns").iterdir()
    return root


def summary_rows(root: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((root / "summary.csv").open(encoding="utf-8")))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str]:
    """A 4-job multirun whose first job fails (a negative hidden size) while the other three train."""
    log_dir = tmp_path_factory.mktemp("sweep")
    result = multirun(*TINY, f"data.cache_dir={log_dir}/cache", "model.hidden_size=-1,8,16,24", log_dir=log_dir)
    return multirun_dir(log_dir), result.stderr


def test_multirun_summary_has_one_row_per_job_best_first(sweep):
    root, _ = sweep
    rows = summary_rows(root)
    assert len(rows) == 4
    assert {row["overrides"] for row in rows} == {f"model.hidden_size={h}" for h in (-1, 8, 16, 24)}
    completed = [row for row in rows if row["status"] == "completed"]
    assert len(completed) == 3 and rows[-1]["status"] == "failed"
    # experiment=reverse optimizes val/exact_match: first column after the overrides, rows sorted by it
    columns = list(rows[0])
    assert columns[:4] == ["job", "status", "overrides", "val/exact_match"]
    assert {"val/bleu", "val/loss", "test/bleu", "test/chrf", "wall_time_s"} <= set(columns)
    scores = [float(row["val/exact_match"]) for row in completed]
    assert scores == sorted(scores, reverse=True)
    for row in completed:
        metrics = read_metrics(root / row["dir"])
        assert float(row["val/loss"]) == pytest.approx(metrics["val/loss"])
        assert float(row["test/bleu"]) == pytest.approx(metrics["test/bleu"])
        assert float(row["wall_time_s"]) > 0
    markdown = (root / "summary.md").read_text().splitlines()
    assert len(markdown) == 2 + 4 and markdown[0].startswith("| job | status | overrides | val/exact_match |")


def test_failed_job_is_marked_and_the_sweep_goes_on(sweep):
    root, stderr = sweep
    (failed,) = [row for row in summary_rows(root) if row["status"] == "failed"]
    assert failed["overrides"] == "model.hidden_size=-1" and failed["job"] == "0"
    assert "model.hidden_size=-1 is not valid" in failed["error"]
    job_dir = root / failed["dir"]
    assert not (job_dir / "metrics.json").exists()
    assert "model.hidden_size=-1 is not valid" in (job_dir / "error.txt").read_text()
    assert json.loads((job_dir / "job.json").read_text())["status"] == "failed"
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "job 0 failed" in errors[0]
    assert "Traceback" not in stderr
    # the jobs after the failed one ran to the end
    assert all((root / str(job) / "metrics.json").is_file() for job in (1, 2, 3))


def test_summary_survives_an_unreadable_job(tmp_path, caplog):
    for job, bleu in ((0, 10.0), (1, 20.0), (2, 30.0)):
        job_dir = tmp_path / str(job)
        job_dir.mkdir()
        record = {"job": job, "overrides": [f"model.hidden_size={8 * (job + 1)}"], "status": "completed", "error": None}
        record.update(wall_time_s=1.5, optimized_metric="val/bleu")
        (job_dir / "job.json").write_text(json.dumps(record))
        (job_dir / "metrics.json").write_text(json.dumps({"val/bleu": bleu}))
    (tmp_path / "1" / "job.json").write_text('{"job": 1, "overrides": ["model.hid')  # cut short
    (tmp_path / "2" / "metrics.json").write_text('{"val/bl')
    with caplog.at_level("WARNING", logger="seq2seq"):
        rows = collect_jobs(tmp_path)
    write_summary(tmp_path, rows)
    by_dir = {row["dir"]: row for row in rows}
    assert by_dir["0"]["status"] == "completed" and by_dir["0"]["metrics"] == {"val/bleu": 10.0}
    assert by_dir["1"]["status"] == "unreadable" and "job.json" in by_dir["1"]["error"] and by_dir["1"]["job"] == 1
    assert by_dir["2"]["status"] == "unreadable" and "metrics.json" in by_dir["2"]["error"]
    assert "1/job.json" in caplog.text and "2/metrics.json" in caplog.text
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 3 and summary[1].startswith("0,completed")


def test_optuna_search_completes_and_reports_its_best_value(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"  # the in-memory default, kept in a file to be read back
    trial_space = ["model.hidden_size=choice(8,16)", "model.num_layers=1", "optimizer.lr=tag(log,interval(1e-3,1e-2))"]
    # chrF moves even for models this small, so the best trial is well defined
    multirun(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        *TINY,
        "test=false",
        "optimized_metric=val/chrf",
        f"data.cache_dir={tmp_path}/cache",
        *trial_space,
        log_dir=tmp_path,
    )
    root = multirun_dir(tmp_path)
    results = yaml.safe_load((root / "optimization_results.yaml").read_text())
    values = {job: read_metrics(root / str(job))["val/chrf"] for job in range(3)}
    best_job = max(values, key=values.get)
    assert results["best_value"] == pytest.approx(values[best_job])
    overrides = yaml.safe_load((root / str(best_job) / ".hydra" / "overrides.yaml").read_text())
    assert f"model.hidden_size={results['best_params']['model.hidden_size']}" in overrides
    # the search space of the config (cell, attention, teacher forcing…) was sampled too
    assert {"model.cell", "attention", "teacher_forcing.ratio", "model.dropout"} <= set(results["best_params"])
    rows = summary_rows(root)
    assert len(rows) == 3 and float(rows[0]["val/chrf"]) == pytest.approx(values[best_job])
    study = optuna.load_study(study_name="seq2seq", storage=storage)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"] * 3
    assert study.best_value == pytest.approx(values[best_job])


def test_submitit_local_launcher_runs_jobs_in_their_own_processes(tmp_path):
    multirun(
        "hydra/launcher=submitit_local",
        *TINY,
        "test=false",
        f"data.cache_dir={tmp_path}/cache",
        "model.hidden_size=8,16",
        log_dir=tmp_path,
    )
    root = multirun_dir(tmp_path)
    rows = summary_rows(root)
    assert [row["status"] for row in rows] == ["completed", "completed"]
    assert all((root / row["dir"] / "checkpoints" / "best.ckpt").is_file() for row in rows)
    # submitit ran each job as a separate process, with its own log
    assert len(list((root / ".submitit").rglob("*_0_log.out"))) == 2


def test_ddp_sim_eval_gives_the_single_process_metrics_over_the_whole_split(reverse_run, tmp_path):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    run_cli("eval", f"ckpt_path={ckpt}", "data.split=val", "trainer=ddp_sim", log_dir=tmp_path)
    (eval_dir,) = run_dirs(tmp_path, "eval")
    distributed, single = read_metrics(eval_dir), read_metrics(reverse_run)  # train.py validated on one process
    assert single["val/bleu"] > 50  # a model that translates, so a one-shard BLEU would differ
    for name in ("bleu", "chrf", "exact_match", "loss", "acc"):
        assert distributed[f"val/{name}"] == pytest.approx(single[f"val/{name}"], rel=1e-5, abs=1e-6), name
    # predictions.tsv holds the whole split (data.source.num_val=200 in TINY_REVERSE), gathered from both ranks
    with open(eval_dir / "predictions.tsv", encoding="utf-8", newline="") as file:
        assert len(list(csv.reader(file, delimiter="\t"))) == 1 + 200


def test_slurm_launcher_without_slurm_is_one_line(tmp_path):
    env = {
        "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "sbatch").exists())
    }
    result = multirun("hydra/launcher=submitit_slurm", *TINY, log_dir=tmp_path, check=False, env=env)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "needs SLURM" in errors[0] and "submitit_local" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "train" / "multiruns").exists() or not list((tmp_path / "train").rglob("job.json"))


def test_slurm_job_size_needs_a_gpu_count(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    result = multirun("hydra/launcher=submitit_slurm", "trainer=ddp", log_dir=tmp_path, check=False, env=env)
    assert result.returncode == 2
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "tasks_per_node=-1" in error and "trainer.devices=4" in error


@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")
def test_slurm_launcher_config_follows_the_trainer(monkeypatch):
    monkeypatch.setenv("PROJECT_ROOT", str(ROOT))
    overrides = ["hydra/launcher=submitit_slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [*overrides, "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)
    assert launcher.timeout_min > 0


def test_multi_process_ddp_in_a_local_sweep_fails_the_job_not_the_machine(tmp_path):
    overrides = [o for o in TINY if not o.startswith("trainer=")]
    result = multirun(*overrides, "trainer=ddp_sim", log_dir=tmp_path, timeout=120, check=False)
    assert result.returncode == 0
    (row,) = summary_rows(multirun_dir(tmp_path))
    assert row["status"] == "failed" and "cannot run inside a local multirun" in row["error"]
