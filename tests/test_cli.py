"""End to end: train.py and eval.py as a user runs them."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time

import pytest
import sacrebleu
import torch
from conftest import ROOT, TINY_REVERSE, read_metrics, run_cli, run_dirs
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from omegaconf import OmegaConf

SCORES = ("bleu", "bleu_lc", "chrf", "chrf++")


def raw_split(run_dir, split: str) -> tuple[list[str], list[str]]:
    """The sources and references of a run's split as its data source reads them (the input order)."""
    pairs = instantiate(OmegaConf.load(run_dir / ".hydra" / "config.yaml").data.source).load()[split]
    return pairs["source"], pairs["target"]


def read_predictions(run_dir) -> list[dict]:
    return list(csv.DictReader((run_dir / "predictions.tsv").open(encoding="utf-8"), delimiter="\t"))


def test_reverse_task_is_learned(reverse_run):
    metrics = read_metrics(reverse_run)
    assert metrics["val/exact_match"] >= 0.8, metrics
    assert metrics["test/exact_match"] >= 0.8, metrics
    assert metrics["val/bleu"] > 80.0
    assert metrics["val/ppl"] == pytest.approx(torch.tensor(metrics["val/loss"]).exp().item(), rel=1e-4)


def test_run_dir_holds_config_log_checkpoints_tokenizers(reverse_run):
    assert (reverse_run / ".hydra" / "config.yaml").is_file()
    assert (reverse_run / "train.log").is_file()
    assert (reverse_run / "checkpoints" / "best.ckpt").is_file()
    assert (reverse_run / "checkpoints" / "last.ckpt").is_file()
    assert (reverse_run / "tokenizer.source.json").is_file()
    assert (reverse_run / "tokenizer.target.json").is_file()
    rows = list(csv.DictReader((reverse_run / "csv" / "metrics.csv").open()))
    ratios = [float(r["train/tf_ratio"]) for r in rows if r.get("train/tf_ratio")]
    assert ratios and all(r == 1.0 for r in ratios)
    grad_norms = [float(r["train/grad_norm"]) for r in rows if r.get("train/grad_norm")]
    assert len(grad_norms) == len(ratios) and all(n > 0 for n in grad_norms)


def test_checkpoint_loads_with_weights_only_and_is_self_contained(reverse_run):
    checkpoint = torch.load(reverse_run / "checkpoints" / "best.ckpt", weights_only=True)
    saved = checkpoint["seq2seq"]
    assert saved["config"]["model"]["cell"] == "gru"
    assert set(saved["tokenizers"]) == {"source", "target"}


def test_eval_on_best_checkpoint_reproduces_training_val_metrics(reverse_run, tmp_path):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    run_cli("eval", f"ckpt_path={ckpt}", "data.split=val", "trainer=cpu", log_dir=tmp_path)
    (eval_dir,) = run_dirs(tmp_path, "eval")
    evaluated, trained = read_metrics(eval_dir), read_metrics(reverse_run)
    for name in ("loss", "ppl", "acc", *SCORES, "exact_match", "num_sentences"):
        assert evaluated[f"val/{name}"] == pytest.approx(trained[f"val/{name}"], rel=1e-5, abs=1e-6), name
    assert trained["val/num_sentences"] == trained["test/num_sentences"] == 200
    assert evaluated["signatures"] == trained["signatures"]
    assert set(trained["signatures"]) == set(SCORES) and "case:lc" in trained["signatures"]["bleu_lc"]
    assert evaluated["decoding"]["_target_"].endswith("GreedySearch")
    rows = read_predictions(eval_dir)
    assert len(rows) == 200 and list(rows[0]) == ["index", "source", "reference", "hypothesis"]
    assert [int(r["index"]) for r in rows] == list(range(200))  # input order, not length-bucketed batch order
    exact = sum(r["reference"] == r["hypothesis"] for r in rows) / len(rows)
    assert exact == pytest.approx(trained["val/exact_match"])


def test_resume_from_last_checkpoint_continues_training(reverse_run, tmp_path):
    last = reverse_run / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True)
    epochs = f"trainer.max_epochs={before['epoch'] + 2}"
    run_cli("train", *TINY_REVERSE, f"ckpt_path={last}", epochs, f"data.cache_dir={tmp_path}/cache", log_dir=tmp_path)
    (run_dir,) = run_dirs(tmp_path, "train")
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == before["epoch"] + 1
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    steps = [int(row["step"]) for row in rows if row.get("train/loss")]
    assert steps and min(steps) >= before["global_step"]  # the step counter goes on: the checkpoint was loaded
    assert read_metrics(run_dir)["val/exact_match"] >= 0.8


def test_ddp_sim_trains_and_writes_one_set_of_outputs(tmp_path):
    """Also: a validation split of one batch (fewer batches than ranks) neither hangs nor counts a sentence twice."""
    run_cli(
        "train",
        *TINY_REVERSE,
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        "data.source.num_train=600",
        "data.source.num_val=20",
        log_dir=tmp_path,
        timeout=300,
    )
    runs = run_dirs(tmp_path, "train")
    assert len(runs) == 1
    metrics = read_metrics(runs[0])
    assert {"val/bleu", "test/bleu", "val/exact_match"} <= set(metrics)
    assert metrics["val/num_sentences"] == 20 and metrics["test/num_sentences"] == 200
    assert len(list((runs[0] / "checkpoints").glob("*.ckpt"))) == 2  # best + last
    # the same checkpoint in one process gives the same validation metrics
    run_cli(
        "eval", f"ckpt_path={runs[0] / 'checkpoints' / 'best.ckpt'}", "data.split=val", "trainer=cpu", log_dir=tmp_path
    )
    (eval_dir,) = run_dirs(tmp_path, "eval")
    single = read_metrics(eval_dir)
    for name in ("loss", "acc", *SCORES, "exact_match", "num_sentences"):
        assert single[f"val/{name}"] == pytest.approx(metrics[f"val/{name}"], rel=1e-5, abs=1e-6), name


def test_ddp_sim_with_fewer_val_pairs_than_processes_is_one_error_line(tmp_path):
    result = run_cli(
        "train", *TINY_REVERSE, "trainer=ddp_sim", "data.source.num_val=1", log_dir=tmp_path, check=False, timeout=300
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and "trainer.devices=1" in errors[0] and "Traceback" not in result.stderr


def test_ddp_eval_writes_predictions_in_input_order_that_sacrebleu_scores_alike(reverse_run, tmp_path):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    run_cli("eval", f"ckpt_path={ckpt}", "data.split=test", "trainer=ddp_sim", log_dir=tmp_path, timeout=300)
    (eval_dir,) = run_dirs(tmp_path, "eval")
    evaluated, trained = read_metrics(eval_dir), read_metrics(reverse_run)
    sources, references = raw_split(reverse_run, "test")
    rows = read_predictions(eval_dir)
    assert [int(r["index"]) for r in rows] == list(range(len(sources)))
    assert [r["source"] for r in rows] == sources and [r["reference"] for r in rows] == references
    hypotheses = (eval_dir / "hypotheses.txt").read_text(encoding="utf-8").splitlines()
    assert hypotheses == [r["hypothesis"] for r in rows]
    # another tool, given the split's reference file and hypotheses.txt, gets the same scores
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    assert bleu.corpus_score(hypotheses, [references]).score == pytest.approx(evaluated["test/bleu"], abs=1e-9)
    assert chrf.corpus_score(hypotheses, [references]).score == pytest.approx(evaluated["test/chrf"], abs=1e-9)
    assert evaluated["signatures"]["bleu"] == bleu.get_signature().format()
    assert evaluated["signatures"]["chrf"] == chrf.get_signature().format()
    # gathered from two processes, the metrics are those of the single-process test at the end of training
    for name in ("loss", "acc", *SCORES, "exact_match", "num_sentences"):
        assert evaluated[f"test/{name}"] == pytest.approx(trained[f"test/{name}"], rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 1), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_ctrl_c_and_sigterm_stop_with_a_resumable_last_checkpoint(tmp_path, signum, exit_code):
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"paths.log_dir={tmp_path}/", *TINY_REVERSE]
    cmd += ["trainer.max_epochs=1000", "trainer.log_every_n_steps=1", f"data.cache_dir={tmp_path}/cache"]
    # A test runner started in the background (nohup, `&`) passes SIGINT on as ignored; give the run a real Ctrl-C.
    process = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300  # generous: a loaded CI machine starts slowly
    while time.time() < deadline and not list(tmp_path.glob("train/runs/*/csv/metrics.csv")):
        time.sleep(0.5)
    time.sleep(2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path, "train")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] > 0 and "seq2seq" in checkpoint
    # saved between two steps: the batches the loader handed out are the steps taken in this epoch
    (loader,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert 0 < loader["batches_done"] <= loader["num_batches"]
    assert (checkpoint["global_step"] - loader["batches_done"]) % loader["num_batches"] == 0
    log = (run_dir / "train.log").read_text()
    assert f"stopped at step {checkpoint['global_step']}; resume with ckpt_path=" in log
    assert not (run_dir / "metrics.json").exists()  # stopped, not finished: no final evaluation


def test_tensorboard_logger_writes_events(tmp_path):
    run_cli("train", *TINY_REVERSE, "debug=fast", "logger=tensorboard", "test=false", log_dir=tmp_path)
    (run_dir,) = run_dirs(tmp_path, "train")
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_the_trainer_keys_users_reach_for_need_no_plus(tmp_path):
    """``trainer.max_steps=100`` and friends override the trainer config as they are (no ``+``) and reach Lightning."""

    settings = {
        "max_steps": 100,
        "min_steps": 10,
        "val_check_interval": 50,
        "check_val_every_n_epoch": 2,
        "limit_train_batches": 7,
        "limit_val_batches": 3,
        "limit_test_batches": 0.5,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 5,
        "gradient_clip_algorithm": "value",
    }
    overrides = [f"trainer.{key}={value}" for key, value in settings.items()]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train", ["trainer=cpu", f"paths.output_dir={tmp_path}", "trainer.max_time=00:01:30:00", *overrides]
        )
    trainer = instantiate(cfg.trainer, logger=False)
    assert {key: getattr(trainer, key) for key in settings} == settings
    (timer,) = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    assert timer.time_remaining() == 90 * 60
