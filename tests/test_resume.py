"""Exact resume: a run killed mid-epoch and resumed from last.ckpt trains as if it had never stopped."""

from __future__ import annotations

import csv
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY_JOB, read_metrics, run_cli, run_dirs
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from test_errors import assert_one_line_error
from torch.utils.data import DataLoader

from seq2seq.callbacks import BestAndLastCheckpoint, CheckpointOnInterrupt, RandomState
from seq2seq.errors import ConfigError

# 8 batches an epoch, 3 epochs; dropout and teacher forcing below 1 make every step draw random numbers.
EXACT = [
    *TINY_JOB,
    "data.source.num_train=128",
    "data.batch_size=16",
    "model.hidden_size=16",
    "model.dropout=0.3",
    "teacher_forcing.ratio=0.5",
    "trainer.max_epochs=3",
    "trainer.num_sanity_val_steps=2",
    "trainer.log_every_n_steps=1",
    "callbacks.model_checkpoint.every_n_train_steps=3",
    "test=false",
    "data.cache_dir=null",
]


class KillAtStep(Callback):
    """SIGKILL this process when training reaches ``step`` (no handler, no cleanup: a power cut)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _train_losses(run_dir: Path) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return {int(row["step"]): float(row["train/loss"]) for row in rows if row.get("train/loss")}


def _run_killed_at(step: int, *overrides: str, log_dir: Path) -> Path:
    """Train with ``overrides`` until SIGKILL at the start of ``step``; the run dir."""
    kill = ["+callbacks.kill._target_=test_resume.KillAtStep", f"+callbacks.kill.step={step}"]
    env = {"PYTHONPATH": str(ROOT / "tests")}
    result = run_cli("train", *EXACT, *overrides, *kill, log_dir=log_dir, check=False, env=env)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    (run_dir,) = run_dirs(log_dir, "train")
    return run_dir


def test_killed_and_resumed_run_logs_the_same_losses_as_an_uninterrupted_one(tmp_path):
    with ThreadPoolExecutor() as pool:  # the uninterrupted run alongside the first interrupted one
        uninterrupted = pool.submit(run_cli, "train", *EXACT, log_dir=tmp_path / "whole")
        # killed in the middle of the second epoch (last.ckpt: step 12, every_n_train_steps=3) ...
        first = _run_killed_at(13, log_dir=tmp_path / "first")
        uninterrupted.result()
    (whole,) = run_dirs(tmp_path / "whole", "train")
    expected = _train_losses(whole)
    assert sorted(expected) == list(range(24))  # 3 epochs of 8 steps, logged at every step

    last = first / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 12
    # ... resumed, and killed again just after the second epoch's end (last.ckpt: step 16, written at validation) ...
    second = _run_killed_at(17, f"ckpt_path={last}", log_dir=tmp_path / "second")
    last = second / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 16
    # ... and resumed to the end: every step trains as in the uninterrupted run, the last one on the same best model
    run_cli("train", *EXACT, f"ckpt_path={last}", log_dir=tmp_path / "third")
    (third,) = run_dirs(tmp_path / "third", "train")
    got = {**_train_losses(second), **_train_losses(third)}
    assert sorted(_train_losses(third)) == list(range(16, 24))  # the resumed run logs only the steps it trains
    assert sorted(got) == list(range(12, 24))
    for step in got:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step
    resumed, uninterrupted = read_metrics(third), read_metrics(whole)
    assert resumed.pop("signatures") == uninterrupted.pop("signatures")
    assert resumed == pytest.approx(uninterrupted, rel=1e-5)


class RankLosses(Callback):
    """Append ``step<TAB>loss`` of each training step of this rank to ``dirpath/rank<R>.tsv`` (loggers get rank 0's)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        with (self.dirpath / f"rank{trainer.global_rank}.tsv").open("a") as file:
            file.write(f"{trainer.global_step - 1}\t{float(outputs['loss'])!r}\n")


def _rank_losses(dirpath: Path, rank: int) -> dict[int, float]:
    lines = (dirpath / f"rank{rank}.tsv").read_text().splitlines()
    return {int(step): float(loss) for step, loss in (line.split("\t") for line in lines)}


def test_every_rank_trains_on_after_a_resume_as_in_the_uninterrupted_run(tmp_path):
    """Under DDP each rank draws its own dropout masks and coin flips: each gets its own random states back."""
    # 2 processes: 4 steps an epoch, 2 epochs; last.ckpt at step 3, in the middle of the first epoch
    ddp = [*EXACT, "trainer=ddp_sim", "trainer.max_epochs=2", "+callbacks.rank_losses._target_=test_resume.RankLosses"]
    env = {"PYTHONPATH": str(ROOT / "tests")}
    with ThreadPoolExecutor() as pool:
        whole = pool.submit(
            run_cli,
            "train",
            *ddp,
            f"+callbacks.rank_losses.dirpath={tmp_path / 'whole'}",
            log_dir=tmp_path / "w",
            env=env,
            timeout=300,
        )
        first = _run_killed_at(
            3, *ddp[len(EXACT) :], f"+callbacks.rank_losses.dirpath={tmp_path / 'x'}", log_dir=tmp_path / "first"
        )
        whole.result()
    last = first / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    resumed = tmp_path / "resumed"
    run_cli(
        "train",
        *ddp,
        f"+callbacks.rank_losses.dirpath={resumed}",
        f"ckpt_path={last}",
        log_dir=tmp_path / "r",
        env=env,
        timeout=300,
    )
    for rank in (0, 1):
        expected, got = _rank_losses(tmp_path / "whole", rank), _rank_losses(resumed, rank)
        assert sorted(expected) == list(range(8)) and sorted(got) == list(range(3, 8))
        for step, loss in got.items():
            assert loss == pytest.approx(expected[step], rel=1e-5, abs=1e-7), (rank, step)


def test_resuming_mid_epoch_with_another_batch_size_is_one_error_line(tmp_path):
    """data.batch_size 16 -> 17 keeps 8 batches an epoch but cuts other ones: the rest of the epoch is unknown."""
    first = _run_killed_at(4, log_dir=tmp_path / "first")  # last.ckpt: step 3 of 8
    last = first / "checkpoints" / "last.ckpt"
    result = run_cli(
        "train", *EXACT, "data.batch_size=17", f"ckpt_path={last}", log_dir=tmp_path / "again", check=False
    )
    assert_one_line_error(result, "data.batch_size=16", "data.batch_size=17", "epoch-end last.ckpt")


# --- the callbacks on a tiny in-process model ---------------------------------------------------------------------


class Scored(LightningModule):
    """A linear model whose validation logs ``val/score`` = ``scores[epoch]``; ``crash_at`` raises in that step."""

    def __init__(self, scores: list[float], crash_at: int | None = None, on_step=None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.scores = scores
        self.crash_at = crash_at
        self.on_step = on_step

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.global_step == self.crash_at:
            raise RuntimeError("boom")
        if self.on_step is not None:
            self.on_step(self.global_step)
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/score", self.scores[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(8, 4), batch_size=2)  # 4 steps an epoch

    def val_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(2, 4), batch_size=2)


def _fit(
    module: Scored,
    dirpath: Path,
    epochs: int,
    ckpt_path: Path | None = None,
    every: int | None = None,
    keep_last: int | None = None,
):
    """Fit with the run's checkpoint callbacks writing into ``dirpath``; the trainer."""
    checkpoint = BestAndLastCheckpoint(
        dirpath, "best", "val/score", save_last=True, every_n_train_steps=every, keep_last=keep_last
    )
    trainer = Trainer(
        max_epochs=epochs,
        callbacks=[checkpoint, CheckpointOnInterrupt(dirpath), RandomState()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=dirpath,
    )
    trainer.fit(module, ckpt_path=ckpt_path)
    return trainer


def _step(path: Path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


def test_every_n_train_steps_keeps_last_fresh_and_best_chosen_at_validation(tmp_path):
    steps = {}  # global step -> (last.ckpt's step, best.ckpt's step) when that training step starts

    def look(step: int) -> None:
        files = [tmp_path / "last.ckpt", tmp_path / "best.ckpt"]
        steps[step] = tuple(_step(f) if f.is_file() else None for f in files)

    _fit(Scored([0.5, 0.4, 0.6], on_step=look), tmp_path, epochs=3, every=3)
    assert steps[3] == (3, None)  # in the first epoch, before any validation
    assert steps[5] == (4, 4)  # after validation: best by its score (not a mid-epoch model)
    assert steps[7] == (6, 4)  # no new best mid-epoch, however stale the score
    assert steps[8] == (8, 4)  # last.ckpt at validation even without a better score (ModelCheckpoint alone: 4)
    assert _step(tmp_path / "best.ckpt") == 12 and _step(tmp_path / "last.ckpt") == 12


def test_mode_follows_the_metric():
    assert BestAndLastCheckpoint(monitor="val/loss").mode == "min"
    assert BestAndLastCheckpoint(monitor="val/ppl").mode == "min"
    assert BestAndLastCheckpoint(monitor="val/exact_match").mode == "max"
    assert BestAndLastCheckpoint(monitor="val/loss", mode="max").mode == "max"
    with pytest.raises(ConfigError, match="every_n_train_steps"):
        BestAndLastCheckpoint(monitor="val/bleu", every_n_train_steps=0)


def test_a_crash_leaves_the_last_checkpoint_untouched(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        _fit(Scored([0.5, 0.6], crash_at=6), tmp_path, epochs=2, every=5)
    assert _step(tmp_path / "last.ckpt") == 5  # the periodic one, not one written mid-step by the crash


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_the_finished_step_and_stop(tmp_path, signum):
    handler = signal.getsignal(signal.SIGINT)
    module = Scored([0.5, 0.6], on_step=lambda step: step == 5 and os.kill(os.getpid(), signum))
    try:
        with pytest.raises(SystemExit) as stopped:  # SIGTERMException, or Lightning's exit(1) after Ctrl-C
            _fit(module, tmp_path, epochs=2)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C after it stopped a run for one
    assert isinstance(stopped.value, SIGTERMException) == (signum == signal.SIGTERM)
    assert _step(tmp_path / "last.ckpt") == 6  # the step that was running when the signal came, finished


def test_a_resumed_run_keeps_the_best_checkpoint_of_the_run_it_resumes(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    _fit(Scored([0.9, 0.5, 0.4, 0.95]), old, epochs=2)  # best at epoch 0
    trainer = _fit(Scored([0.9, 0.5, 0.4, 0.95]), new, epochs=3, ckpt_path=old / "last.ckpt")
    assert trainer.checkpoint_callback.best_model_path == str(old / "best.ckpt")  # 0.4 at epoch 2 is no better
    assert trainer.checkpoint_callback.best_model_score == pytest.approx(0.9)
    assert not (new / "best.ckpt").exists() and (new / "last.ckpt").is_file()
    trainer = _fit(Scored([0.9, 0.5, 0.4, 0.95]), tmp_path / "newer", epochs=4, ckpt_path=new / "last.ckpt")
    assert trainer.checkpoint_callback.best_model_path == str(tmp_path / "newer" / "best.ckpt")  # 0.95 wins
    assert (old / "best.ckpt").is_file()  # another run's files are never deleted


# --- keep_last: the last N epoch-end checkpoints, to average -------------------------------------------------------


def _files(dirpath: Path) -> set[str]:
    return {path.name for path in dirpath.iterdir()}


def test_keep_last_keeps_exactly_the_last_n_epoch_checkpoints(tmp_path):
    _fit(Scored([0.5, 0.6, 0.4, 0.3]), tmp_path / "off", epochs=4)
    assert _files(tmp_path / "off") == {"best.ckpt", "last.ckpt"}  # off by default
    _fit(Scored([0.5, 0.6, 0.4, 0.3]), tmp_path / "on", epochs=4, keep_last=2)
    assert _files(tmp_path / "on") == {"best.ckpt", "last.ckpt", "epoch_002.ckpt", "epoch_003.ckpt"}
    for epoch in (2, 3):  # the model at the end of that epoch (4 steps an epoch)
        checkpoint = torch.load(tmp_path / "on" / f"epoch_{epoch:03d}.ckpt", weights_only=True)
        assert (checkpoint["epoch"], checkpoint["global_step"]) == (epoch, 4 * (epoch + 1))
    last = torch.load(tmp_path / "on" / "last.ckpt", weights_only=True)["state_dict"]
    final = torch.load(tmp_path / "on" / "epoch_003.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(last[name], final[name]) for name in last)


def test_keep_last_counts_but_never_deletes_the_epoch_checkpoints_of_the_run_it_resumes(tmp_path, caplog):
    old, new = tmp_path / "old", tmp_path / "new"
    _fit(Scored([0.5, 0.6, 0.4, 0.3]), old, epochs=3, keep_last=2)
    assert _files(old) == {"best.ckpt", "last.ckpt", "epoch_001.ckpt", "epoch_002.ckpt"}
    with caplog.at_level("INFO", logger="seq2seq"):
        trainer = _fit(Scored([0.5, 0.6, 0.4, 0.3]), new, epochs=4, ckpt_path=old / "last.ckpt", keep_last=2)
    assert _files(old) == {"best.ckpt", "last.ckpt", "epoch_001.ckpt", "epoch_002.ckpt"}
    assert _files(new) == {"last.ckpt", "epoch_003.ckpt"}
    assert trainer.checkpoint_callback.epoch_checkpoints == {2: old / "epoch_002.ckpt", 3: new / "epoch_003.ckpt"}
    kept = f"ckpt_paths=[{old / 'epoch_002.ckpt'},{new / 'epoch_003.ckpt'}]"
    assert any(kept in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("keep_last", [0, -1, True, 1.5])
def test_keep_last_must_be_a_positive_number(keep_last):
    with pytest.raises(ConfigError, match=f"keep_last={keep_last!r}: use a number"):
        BestAndLastCheckpoint(monitor="val/bleu", keep_last=keep_last)
