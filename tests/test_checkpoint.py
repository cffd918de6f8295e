"""Checkpoints are data, never code: the allow-list, the format check, damaged files; run files written whole."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import torch
import yaml
from conftest import ROOT, run_cli, translate
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seq2seq.build import load_trained
from seq2seq.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_KEY,
    RESTORED_GROUPS,
    load_checkpoint,
    verify_config,
)
from seq2seq.errors import CheckpointError
from seq2seq.utils.cli import atomic_open, write_metrics


def craft(source: Path, target: Path, **groups) -> Path:
    """A copy of the checkpoint ``source`` at ``target`` whose stored config has ``groups`` in place of its own."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    checkpoint["seq2seq"]["config"].update(groups)
    torch.save(checkpoint, target)
    return target


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return errors[0]


# --- the allow-list ------------------------------------------------------------------------------------------------


def test_checkpoint_that_opens_a_file_is_refused_and_the_file_is_intact(reverse_run, tmp_path):
    victim = tmp_path / "bashrc"
    victim.write_text("export KEEP=me\n")
    opener = {"_target_": "builtins.open", "_args_": [str(victim), "w"]}
    ckpt = craft(reverse_run / "checkpoints" / "best.ckpt", tmp_path / "evil.ckpt", teacher_forcing=opener)
    result = run_cli("eval", f"ckpt_path={ckpt}", log_dir=tmp_path / "logs", check=False)
    error = one_error_line(result)
    assert "teacher_forcing._target_" in error and "builtins.open" in error and "evil.ckpt" in error
    assert victim.read_text() == "export KEEP=me\n"
    assert not (tmp_path / "logs" / "eval" / "runs").exists() or not list((tmp_path / "logs").rglob("*.tsv"))


def test_checkpoint_that_loads_a_hub_model_is_refused_before_any_code_runs(reverse_run, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = tmp_path / "ran"
    (repo / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef evil(**kwargs):\n    return None\n")
    hub = {"_target_": "torch.hub.load", "repo_or_dir": str(repo), "model": "evil", "source": "local"}
    ckpt = craft(reverse_run / "checkpoints" / "best.ckpt", tmp_path / "hub.ckpt", model=hub)
    result = translate(ckpt, "t1 t2\n")
    error = one_error_line(result)
    assert "model._target_" in error and "torch.hub.load" in error
    assert result.stdout == "" and not marker.exists()


def test_checkpoint_that_builds_a_project_class_with_side_effects_is_refused(reverse_run, tmp_path):
    # A seq2seq class is not enough: model.pretrained_embeddings is no place for a _target_ at all, and a W&B
    # logger there used to create its save_dir and start a run before failing with Hydra's multi-line error.
    save_dir = tmp_path / "planted"
    logger = {"_target_": "seq2seq.callbacks.wandb.WandbLogger", "save_dir": str(save_dir), "offline": True}
    stored = torch.load(reverse_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    model = {**stored["seq2seq"]["config"]["model"], "pretrained_embeddings": logger}
    ckpt = craft(reverse_run / "checkpoints" / "best.ckpt", tmp_path / "logger.ckpt", model=model)
    result = run_cli("eval", f"ckpt_path={ckpt}", log_dir=tmp_path / "logs", check=False)
    error = one_error_line(result)
    assert "model.pretrained_embeddings._target_" in error and "WandbLogger" in error
    assert not save_dir.exists() and not list(tmp_path.rglob("wandb"))


@pytest.mark.parametrize(
    "group, target",
    [
        ("model", "seq2seq.decoding.BeamSearch"),  # a project class, but not a model
        ("decoding", "seq2seq.modules.Seq2Seq"),
        ("teacher_forcing", "seq2seq.decoding.GreedySearch"),
        ("optimizer", "torch.optim.lr_scheduler.StepLR"),
        ("scheduler", "torch.optim.Adam"),
        ("data", "seq2seq.callbacks.wandb.WandbLogger"),
    ],
)
def test_each_group_builds_only_its_own_kind(group, target):
    with pytest.raises(CheckpointError) as caught:
        verify_config(stored_config(**{group: {"_target_": target}}), "evil.ckpt")
    message = str(caught.value)
    assert f"{group}._target_ = {target!r} is not allowed" in message and "\n" not in message


def test_a_target_under_a_plain_key_is_refused_even_when_its_class_is_allowed():
    schedule = {"_target_": "seq2seq.teacher_forcing.ConstantSchedule", "ratio": 1.0}
    model = {**stored_config()["model"], "extra": schedule}
    with pytest.raises(CheckpointError, match=r"model\.extra\._target_ = .*ConstantSchedule.* not allowed"):
        verify_config(stored_config(model=model), "evil.ckpt")


def stored_config(**groups) -> dict:
    config = {
        "model": {"_target_": "seq2seq.modules.Seq2Seq", "cell": "gru"},
        "teacher_forcing": {"_target_": "seq2seq.teacher_forcing.ConstantSchedule", "ratio": 1.0},
        "decoding": {"_target_": "seq2seq.decoding.GreedySearch"},
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.001},
        "scheduler": {"_target_": "torch.optim.lr_scheduler.ExponentialLR", "_partial_": True, "gamma": 0.9},
        "data": {
            "_target_": "seq2seq.data.datamodule.Seq2SeqDataModule",
            "source": {"_target_": "seq2seq.data.sources.ReverseSource"},
        },
        # never rebuilt from a checkpoint, so never instantiated: dropped, not checked
        "trainer": {"_target_": "lightning.pytorch.trainer.Trainer"},
        "callbacks": {"checkpoint": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint"}},
    }
    return {**config, **groups}


OPEN = {"_target_": "builtins.open", "_args_": ["/tmp/x", "w"]}


@pytest.mark.parametrize(
    "groups, key, target",
    [
        ({"teacher_forcing": OPEN}, "teacher_forcing._target_", "builtins.open"),
        ({"model": {"_target_": "torch.hub.load", "repo_or_dir": "x"}}, "model._target_", "torch.hub.load"),
        # a path under an allowed package that reaches a function elsewhere through a module attribute
        ({"decoding": {"_target_": "seq2seq.checkpoint.torch.hub.load"}}, "decoding._target_", "torch.hub.load"),
        ({"decoding": {"_target_": "seq2seq.utils.cli.write_metrics"}}, "decoding._target_", "write_metrics"),
        ({"decoding": {"_target_": "torch.optim.Adam.__init__"}}, "decoding._target_", "Adam.__init__"),
        # an allowed class carrying a forbidden one in its positional arguments or nested configs
        (
            {"optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "_args_": [OPEN]}},
            "optimizer._args_[0]._target_",
            "builtins.open",
        ),
        (
            {"data": {"_target_": "seq2seq.data.datamodule.Seq2SeqDataModule", "source": {"x": [1, OPEN]}}},
            "data.source.x[1]._target_",
            "builtins.open",
        ),
        ({"scheduler": {"_target_": 42}}, "scheduler._target_", "42"),
    ],
)
def test_verify_refuses_targets_outside_the_allow_list(groups, key, target):
    with pytest.raises(CheckpointError) as caught:
        verify_config(stored_config(**groups), "evil.ckpt")
    message = str(caught.value)
    assert "evil.ckpt" in message and key in message and target in message and "seq2seq." in message


def test_verify_refuses_interpolations_that_would_decode_into_a_target():
    # OmegaConf resolves this into {_target_: builtins.open, …} only when instantiate reads it, after any check
    # OmegaConf would resolve this into {_target_: builtins.open, …} after any check of the stored strings' keys
    smuggled = "${oc.decode:'{_target_: builtins.open, _args_: [/tmp/x, w]}'}"
    schedule = {"_target_": "seq2seq.teacher_forcing.ConstantSchedule", "ratio": smuggled}
    with pytest.raises(CheckpointError, match=r"teacher_forcing.ratio.*interpolation"):
        verify_config(stored_config(teacher_forcing=schedule), "evil.ckpt")


def test_verify_keeps_only_the_groups_a_model_is_rebuilt_from():
    trained = verify_config(stored_config(), "run.ckpt")
    assert set(trained) == set(RESTORED_GROUPS)
    assert trained.optimizer._target_ == "torch.optim.Adam" and trained.scheduler.gamma == 0.9


def test_verify_names_a_missing_group():
    config = stored_config()
    del config["model"]
    with pytest.raises(CheckpointError, match="no model config"):
        verify_config(config, "run.ckpt")


CONFIG_CHOICES = [
    *(f"data={path.stem}" for path in sorted((ROOT / "conf" / "data").glob("[!_]*.yaml"))),
    *(f"experiment={path.stem}" for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml"))),
    *(f"teacher_forcing={path.stem}" for path in sorted((ROOT / "conf" / "teacher_forcing").glob("*.yaml"))),
    *(f"decoding={path.stem}" for path in sorted((ROOT / "conf" / "decoding").glob("*.yaml"))),
    *(f"scheduler={path.stem}" for path in sorted((ROOT / "conf" / "scheduler").glob("*.yaml"))),
]


def test_every_config_of_the_project_passes_the_allow_list(monkeypatch):
    monkeypatch.setenv("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        for choice in CONFIG_CHOICES:
            overrides = [choice, "data.train=t.tsv"] if choice == "data=files" else [choice]
            cfg = compose("train", overrides)
            # group by group: the others (callbacks, trainer) need Hydra's run dir to resolve
            stored = {
                g: None if cfg[g] is None else OmegaConf.to_container(cfg[g], resolve=True) for g in RESTORED_GROUPS
            }
            verify_config(stored, choice)  # raises on a refused target


def test_a_real_checkpoint_is_restored(reverse_run):
    checkpoint, trained = load_trained(reverse_run / "checkpoints" / "best.ckpt")
    assert trained.model._target_ == "seq2seq.modules.Seq2Seq" and "trainer" not in trained
    assert checkpoint[CHECKPOINT_KEY]["format"] == CHECKPOINT_FORMAT


# --- the format and damaged files ----------------------------------------------------------------------------------


def saved(path: Path, **payload) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(3)}, CHECKPOINT_KEY: payload}, path)
    return path


def test_newer_checkpoint_format_asks_for_an_upgrade(tmp_path):
    path = saved(tmp_path / "new.ckpt", format=CHECKPOINT_FORMAT + 1, config={}, tokenizers={})
    with pytest.raises(CheckpointError, match=rf"new.ckpt.*format {CHECKPOINT_FORMAT + 1}.*newer.*upgrade"):
        load_checkpoint(path)


@pytest.mark.parametrize("payload", [{}, {"format": 0}, {"format": "1"}])
def test_missing_or_older_checkpoint_format_is_refused(tmp_path, payload):
    path = saved(tmp_path / "old.ckpt", config={}, tokenizers={}, **payload)
    with pytest.raises(CheckpointError, match=r"old.ckpt.*format"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 0.5, -10])
def test_truncated_checkpoint_is_reported_as_damaged(tmp_path, keep):
    whole = saved(tmp_path / "whole.ckpt", format=CHECKPOINT_FORMAT, config={}, tokenizers={}).read_bytes()
    cut = tmp_path / "last.ckpt"
    cut.write_bytes(whole[: int(len(whole) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(cut)
    message = str(caught.value)
    assert "last.ckpt" in message and "damaged or incomplete" in message and "best.ckpt" in message


def test_checkpoint_holding_objects_is_left_unread(tmp_path):
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, CHECKPOINT_KEY: {"format": 1}, "where": PurePosixPath("/etc")}, path)
    with pytest.raises(CheckpointError, match=r"objects.ckpt is not a checkpoint of this project.*could run code"):
        load_checkpoint(path)


def test_a_zip_that_is_not_a_checkpoint_is_not_called_damaged(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.ckpt", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not a checkpoint of this project") as caught:
        load_checkpoint(tmp_path / "other.ckpt")
    assert "damaged" not in str(caught.value)


# --- run files written whole ---------------------------------------------------------------------------------------


class FullDisk:
    """A file whose writes stop halfway with ENOSPC, as on a full disk or a killed process."""

    def __init__(self, file) -> None:
        self.file = file

    def write(self, text: str) -> int:
        self.file.write(text[: len(text) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


@pytest.fixture
def fill_disk(monkeypatch):
    """Call it to make every file opened for writing from then on a `FullDisk`."""
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FullDisk(handle) if set(mode) & set("wxa") else handle

    def fill() -> None:
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)  # what pathlib's write_text uses

    return fill


def test_interrupted_metrics_write_leaves_the_previous_file_whole(tmp_path, fill_disk):
    path = tmp_path / "metrics.json"
    path.write_bytes(b'{\n  "val/bleu": 12.5\n}\n')
    fill_disk()
    with pytest.raises(OSError, match="No space left"):
        write_metrics(path, {"val/bleu": torch.tensor(30.0), "test/bleu": 29.0})
    assert json.loads(path.read_bytes()) == {"val/bleu": 12.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


def test_atomic_open_replaces_the_file_only_when_complete(tmp_path):
    path = tmp_path / "predictions.tsv"
    path.write_text("old\n")
    with atomic_open(path, newline="") as file:
        file.write("new\r\n")
        assert path.read_text() == "old\n"  # readers see the old file until the new one is whole
    assert path.read_bytes() == b"new\r\n"
    with pytest.raises(ValueError), atomic_open(path) as file:
        file.write("partial")
        raise ValueError("interrupted")
    assert path.read_bytes() == b"new\r\n" and [p.name for p in tmp_path.iterdir()] == ["predictions.tsv"]


# --- the project root ----------------------------------------------------------------------------------------------


def resolved_paths(script: str, *overrides: str, env: dict) -> dict:
    cmd = [sys.executable, str(ROOT / "src" / f"{script}.py"), "--cfg", "job", "--resolve", "--package", "paths"]
    result = subprocess.run(
        [*cmd, "ckpt_path=x", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("script", ["train", "translate"])  # eval: below
def test_project_root_of_the_shell_does_not_move_data_and_logs(script, tmp_path):
    paths = resolved_paths(script, env={**os.environ, "PROJECT_ROOT": str(tmp_path)})
    assert paths["root_dir"] == str(ROOT)
    assert paths["data_dir"] == f"{ROOT}/data/" and paths["log_dir"] == f"{ROOT}/logs/"


def test_the_root_moves_when_the_config_says_so(tmp_path):
    paths = resolved_paths("eval", f"paths.root_dir={tmp_path}", env={**os.environ, "PROJECT_ROOT": "/elsewhere"})
    assert paths["data_dir"] == f"{tmp_path}/data/" and paths["cache_dir"] == f"{tmp_path}/data/cache/"
