"""average.py: the mean of several checkpoints is a checkpoint eval.py and translate.py use."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import TINY_REVERSE, read_metrics, run_cli, run_dirs, translate


def perturbed(source, target, scale: float) -> None:
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["state_dict"] = {
        k: v + scale if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()
    }
    torch.save(checkpoint, target)


def test_average_is_the_mean_and_evaluates(reverse_run, tmp_path):
    best = reverse_run / "checkpoints" / "best.ckpt"
    a, b, out = tmp_path / "a.ckpt", tmp_path / "b.ckpt", tmp_path / "avg.ckpt"
    perturbed(best, a, 0.01)
    perturbed(best, b, -0.01)
    run_cli("average", f"ckpt_paths=[{a},{b}]", f"output={out}", log_dir=tmp_path)
    averaged = torch.load(out, weights_only=True)
    original = torch.load(best, weights_only=True)["state_dict"]
    assert averaged["state_dict"].keys() == original.keys()
    for name, value in original.items():
        torch.testing.assert_close(averaged["state_dict"][name], value, msg=name)
    # a normal checkpoint: eval.py scores it like the original, translate.py uses it
    run_cli("eval", f"ckpt_path={out}", "trainer=cpu", log_dir=tmp_path)
    run_cli("eval", f"ckpt_path={best}", "trainer=cpu", log_dir=tmp_path)
    first, second = (read_metrics(run) for run in run_dirs(tmp_path, "eval"))
    assert first["test/bleu"] == second["test/bleu"]
    result = translate(out, "t1 t2 t3\n")
    assert result.returncode == 0 and result.stdout == "t3 t2 t1\n"


def test_other_vocabularies_are_refused(reverse_run, tmp_path):
    best = reverse_run / "checkpoints" / "best.ckpt"
    other = torch.load(best, weights_only=True)
    target = other["seq2seq"]["tokenizers"]["target"]
    other["seq2seq"]["tokenizers"]["target"] = target.replace("t1", "x1")
    assert other["seq2seq"]["tokenizers"]["target"] != target
    torch.save(other, tmp_path / "other.ckpt")
    result = run_cli(
        "average", f"ckpt_paths=[{best},{tmp_path / 'other.ckpt'}]", f"output={tmp_path}/avg.ckpt",
        log_dir=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'other.ckpt'} and {best} have different target tokenizers: average checkpoints of one run"
    ]
    assert not (tmp_path / "avg.ckpt").exists()


@pytest.mark.slow  # a CLI round trip of 10-30 s; the default suite covers its parts
def test_keep_last_epochs_average_into_a_checkpoint_eval_scores(tmp_path):
    """keep_last=2 on a tiny reverse run: exactly the last two epoch files; the logged command averages them."""
    overrides = ["data.source.num_train=500", "trainer.max_epochs=3", "callbacks.model_checkpoint.keep_last=2"]
    run_cli("train", *TINY_REVERSE, *overrides, "test=false", "data.cache_dir=null", log_dir=tmp_path)
    (run_dir,) = run_dirs(tmp_path, "train")
    checkpoints = run_dir / "checkpoints"
    epochs = [checkpoints / "epoch_001.ckpt", checkpoints / "epoch_002.ckpt"]
    assert {path.name for path in checkpoints.iterdir()} == {"best.ckpt", "last.ckpt", *(e.name for e in epochs)}
    (command,) = re.findall(r"python src/average.py (ckpt_paths=\[.*\])", (run_dir / "train.log").read_text())
    assert command == f"ckpt_paths=[{epochs[0]},{epochs[1]}]"

    out = tmp_path / "avg.ckpt"
    run_cli("average", command, f"output={out}", log_dir=tmp_path)
    first, second = (torch.load(path, weights_only=True)["state_dict"] for path in epochs)
    averaged = torch.load(out, weights_only=True)["state_dict"]
    for name, value in first.items():
        torch.testing.assert_close(averaged[name], (value + second[name]) / 2, msg=name)
    run_cli("eval", f"ckpt_path={out}", "trainer=cpu", log_dir=tmp_path)
    (eval_dir,) = run_dirs(tmp_path, "eval")
    metrics = read_metrics(eval_dir)
    assert metrics["checkpoint"] == str(out) and metrics["test/num_sentences"] == 200
