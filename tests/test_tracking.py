"""Experiment tracking: W&B runs written offline (read back with wandb's own reader), the logger bundle, bad input."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import wandb
import yaml
from conftest import TINY_JOB, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.callbacks import WandbLogger
from seq2seq.callbacks.wandb import has_credentials

TINY = TINY_JOB


def wandb_env(tmp_path: Path) -> dict[str, str]:
    """W&B's own files under ``tmp_path``, and no credentials from the home directory."""
    return {
        "NETRC": str(tmp_path / "netrc"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
    }


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of an offline run's ``.wandb`` file, as printed by wandb's reader (``wandb leet inspect``)."""
    cmd = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def of_type(records: list[dict], kind: str) -> list[dict]:
    return [record[kind] for record in records if record["type"] == kind]


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Two jobs with logger=many and an API key for a W&B server that cannot be reached."""
    log_dir = tmp_path_factory.mktemp("tracking")
    env = {
        **wandb_env(log_dir),
        "WANDB_API_KEY": "0" * 40,
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # nothing listens: connection refused
        "OMP_NUM_THREADS": "1",  # tiny models: one thread is fastest, and a busy machine cannot oversubscribe it
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WANDB_MODE", raising=False)
        result = run_cli(
            "train",
            *TINY,
            f"data.cache_dir={log_dir}/cache",
            "logger=many",
            "logger.wandb.entity=nobody-team",
            "logger.wandb.init_timeout=1",
            "logger.wandb.log_model=true",
            "trainer.log_every_n_steps=1",
            "model.hidden_size=8,16",
            "-m",
            log_dir=log_dir,
            env=env,
        )
    (root,) = (log_dir / "train" / "multiruns").iterdir()
    return root, result


def offline_run(job_dir: Path) -> Path:
    (run_dir,) = (job_dir / "wandb").glob("offline-run-*")
    return run_dir


def test_unreachable_entity_goes_offline_in_one_line_and_training_goes_on(wandb_sweep):
    root, result = wandb_sweep
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "cannot be reached" in line]
    assert len(lines) == 2, output[-3000:]  # one per job; the second job does not wait again
    assert "entity 'nobody-team'" in lines[0] and "logging offline" in lines[0]
    for job, line in zip((0, 1), lines):
        assert f"wandb sync {offline_run(root / str(job))}" in line
        assert (root / str(job) / "metrics.json").is_file()
    assert "Traceback" not in output


def test_offline_run_holds_config_metric_history_and_predictions(wandb_sweep):
    root, _ = wandb_sweep
    for job, hidden_size in ((0, 8), (1, 16)):
        run_dir = offline_run(root / str(job))
        records = wandb_records(run_dir)
        config = {}
        for update in of_type(records, "config"):
            config.update(update["update"])
        assert config["model"]["hidden_size"] == hidden_size and config["model"]["cell"] == "gru"
        assert config["data"]["source"]["num_train"] == 96 and config["optimized_metric"] == "val/exact_match"

        history = [record["item"] for record in of_type(records, "history")]
        bleu = [item["val/bleu"] for item in history if "val/bleu" in item]
        assert len(bleu) == 2  # the epoch's validation and the final one on the best checkpoint
        assert bleu[-1] == pytest.approx(json.loads((root / str(job) / "metrics.json").read_text())["val/bleu"])
        assert any("train/tf_ratio" in item for item in history) and any("test/chrf" in item for item in history)

        tables = [item for item in history if item.get("val/predictions._type") == "table-file"]
        assert len(tables) == 2
        table = json.loads((run_dir / "files" / tables[-1]["val/predictions.path"]).read_text())
        assert table["columns"] == ["source", "reference", "hypothesis"] and len(table["data"]) == 20
        for source, reference, _ in table["data"]:  # the reverse task: the reference is the source reversed
            assert reference.split() == source.split()[::-1]


def test_each_multirun_job_has_its_own_run_in_the_multirun_group(wandb_sweep):
    root, _ = wandb_sweep
    runs = [of_type(wandb_records(offline_run(root / str(job))), "run")[0] for job in (0, 1)]
    assert runs[0]["run_id"] != runs[1]["run_id"]
    assert {run["run_group"] for run in runs} == {f"train-{root.name}"}
    for job, run in enumerate(runs):
        assert set(run["tags"]) == {"cell=gru", "attention=none", "data=reverse"}
        assert run["display_name"] == f"job {job}" and f"model.hidden_size={8 * (job + 1)}" in run["notes"]
        exits = of_type(wandb_records(offline_run(root / str(job))), "exit")
        assert [e.get("exit_code", 0) for e in exits] == [0]


def test_best_checkpoint_is_logged_as_a_model_artifact(wandb_sweep):
    root, _ = wandb_sweep
    artifacts = of_type(wandb_records(offline_run(root / "0")), "artifact")
    models = [artifact for artifact in artifacts if artifact["type"] == "model"]
    assert any("best" in artifact["aliases"] for artifact in models)


def test_many_also_writes_csv_and_tensorboard_with_config_and_predictions(wandb_sweep):
    root, _ = wandb_sweep
    job_dir = root / "0"
    assert (job_dir / "csv" / "metrics.csv").is_file()
    hparams = yaml.safe_load((job_dir / "csv" / "hparams.yaml").read_text())
    assert hparams["model"]["hidden_size"] == 8
    tags = set()
    for events in (job_dir / "tensorboard").rglob("events.out.tfevents.*"):  # a file per fit/validate/test
        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
        accumulator.Reload()
        tags.update(accumulator.Tags()["tensors"])
    assert {"val/predictions/text_summary", "test/predictions/text_summary"} <= tags


def test_no_api_key_starts_offline_and_says_how_to_sync(tmp_path, monkeypatch, caplog):
    for name, value in wandb_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert not has_credentials()
    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        logger = WandbLogger(project="tests", save_dir=str(tmp_path), tags=["cell=gru"])
    try:
        run_dir = Path(logger.experiment.dir).parent
        assert logger.experiment.offline and run_dir.name.startswith("offline-run-")
        (message,) = [r.getMessage() for r in caplog.records if "wandb sync" in r.getMessage()]
        assert message.startswith("no W&B API key") and message.endswith(f"wandb sync {run_dir}")
    finally:
        wandb.finish()


def test_credentials_come_from_the_environment_or_netrc(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert not has_credentials()
    netrc.write_text("machine wandb.example.org\n  login user\n  password " + "1" * 40 + "\n")
    netrc.chmod(0o600)
    assert has_credentials()
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    monkeypatch.setenv("WANDB_API_KEY", "2" * 40)
    assert has_credentials()


def test_unknown_logger_lists_the_choices(tmp_path):
    result = run_cli("train", "logger=nonsense", log_dir=tmp_path, check=False)
    assert result.returncode != 0
    assert "Could not find 'logger/nonsense'" in result.stderr
    assert all(name in result.stderr for name in ("csv", "tensorboard", "wandb", "many"))
    assert "Traceback" not in result.stderr
