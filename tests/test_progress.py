"""Readable progress (tokens/s, one line per validation), no start-up noise, early stopping."""

from __future__ import annotations

import csv
import re

import torch
from conftest import TINY_JOB, run_cli, run_dirs

from seq2seq.data.batching import collate
from seq2seq.data.tokenizers import PAD_ID

LINE = re.compile(
    r"epoch (\d+) \| step (\d+) \| train loss [\d.]+ \| val loss [\d.]+ \| val bleu [\d.]+ \| [\d,]+ tok/s \| "
    r"elapsed \d+:\d\d:\d\d"
)


def test_batch_counts_its_target_tokens_on_the_cpu():
    examples = [
        {"index": 0, "source": "a", "target": "b c", "src_ids": [5], "tgt_ids": [6, 7]},
        {"index": 1, "source": "d e", "target": "f", "src_ids": [8, 9], "tgt_ids": [10]},
    ]
    batch = collate(examples)
    assert isinstance(batch.num_tokens, int)
    assert batch.num_tokens == int((batch.tgt_out != PAD_ID).sum()) == 5  # <eos> counted, padding not


def test_one_readable_line_per_validation_and_tokens_per_sec(tmp_path):
    result = run_cli(
        "train", *TINY_JOB, "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "test=false", log_dir=tmp_path
    )
    (run_dir,) = run_dirs(tmp_path, "train")
    # the terminal and train.log both carry one line per validation (not for the sanity check, nor the final one)
    for text in (result.stdout + result.stderr, (run_dir / "train.log").read_text()):
        lines = LINE.findall(text)
        assert [epoch for epoch, _ in lines] == ["0", "1"], text[-3000:]
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    rates = [float(row["train/tokens_per_sec"]) for row in rows if row.get("train/tokens_per_sec")]
    assert rates and all(rate > 0 for rate in rates)
    # Lightning's start-up noise is gone
    output = result.stdout + result.stderr
    for noise in ("💡 Tip", "was configured so", "LeafSpec"):
        assert noise not in output


def test_early_stopping_stops_and_tests_the_best_checkpoint(tmp_path):
    # the tiny model's exact match stays flat, so patience 1 ends the run after its second validation
    result = run_cli(
        "train",
        *TINY_JOB,
        "trainer.max_epochs=30",
        "callbacks.model_checkpoint.monitor=val/exact_match",
        "callbacks.early_stopping.patience=1",
        log_dir=tmp_path,
    )
    (run_dir,) = run_dirs(tmp_path, "train")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] < 5
    assert "evaluating" in result.stderr + result.stdout and "best.ckpt" in (run_dir / "train.log").read_text()
    assert "test/bleu" in (run_dir / "metrics.json").read_text()


def test_early_stopping_patience_must_be_a_positive_whole_number(tmp_path):
    result = run_cli("train", *TINY_JOB, "callbacks.early_stopping.patience=0", log_dir=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: callbacks.early_stopping.patience=0")


def test_tokens_per_sec_is_logged_with_the_loss_when_epochs_are_shorter_than_the_log_interval(tmp_path):
    # 3 batches an epoch, a log every 5 steps: the rate's window spans epochs
    overrides = ["trainer.max_epochs=4", "trainer.log_every_n_steps=5", "test=false", "logger=csv"]
    run_cli("train", *TINY_JOB, *overrides, log_dir=tmp_path)
    (run_dir,) = run_dirs(tmp_path, "train")
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    losses = [int(row["step"]) for row in rows if row.get("train/loss")]
    rates = {int(row["step"]): float(row["train/tokens_per_sec"]) for row in rows if row.get("train/tokens_per_sec")}
    assert losses == [4, 9]  # global steps 5 and 10 (Lightning writes the 0-based step)
    assert sorted(rates) == losses
    assert all(rate > 0 for rate in rates.values())
