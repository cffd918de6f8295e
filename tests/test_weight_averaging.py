"""EMA of the weights (callbacks.ema.decay): what validation, the checkpoints and test use."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import ROOT, TINY_JOB, read_metrics, run_cli, run_dirs
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import WeightAveraging

from seq2seq.build import build_module
from seq2seq.callbacks import ema
from seq2seq.callbacks.weight_averaging import warmed_up_decay
from seq2seq.checkpoint import checkpoint_tokenizers, load_checkpoint
from seq2seq.errors import ConfigError
from seq2seq.utils.cli import instantiate_group, plain


class RecordWeights(Callback):
    """The module's weights after every optimizer step."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.snapshots.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})


def test_the_model_ends_with_the_exponential_moving_average_of_its_steps(tmp_path):
    decay = 0.2  # below the warm-up's (1 + n) / (10 + n) from the third update on, so both rules are used
    overrides = [*TINY_JOB, f"paths.output_dir={tmp_path}", f"callbacks.ema.decay={decay}"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides)
    cfg.data.cache_dir = None
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.tokenizers_state(), config=plain(cfg.model))
    recorder = RecordWeights()
    callbacks = [recorder, *[c for c in instantiate_group(cfg.callbacks) if isinstance(c, WeightAveraging)]]
    assert len(callbacks) == 2
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)

    expected = dict(recorder.snapshots[0])  # the first update copies the weights
    for updates, snapshot in enumerate(recorder.snapshots[1:], start=1):
        weight = min(decay, (1 + updates) / (10 + updates))  # the warmed-up decay
        expected = {
            k: weight * expected[k] + (1 - weight) * snapshot[k] if v.is_floating_point() else snapshot[k]
            for k, v in expected.items()
        }
    assert len(recorder.snapshots) == 3
    assert [min(decay, (1 + n) / (10 + n)) for n in (1, 2)] == [2 / 11, decay]
    final = module.model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(final[name], value, msg=name)
    # and the average is not just the last weights
    assert any(not torch.equal(final[k], recorder.snapshots[-1][k]) for k in final)


def test_checkpoints_hold_the_average_and_eval_uses_it(tmp_path):
    run_cli("train", *TINY_JOB, "callbacks.ema.decay=0.9", "test=false", log_dir=tmp_path)
    (run_dir,) = run_dirs(tmp_path, "train")
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    raw, averaged = best["current_model_state"], best["state_dict"]
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw if raw[k].is_floating_point())
    run_cli("eval", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "trainer=cpu", log_dir=tmp_path)


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, True])
def test_decay_must_be_in_the_open_unit_interval(decay):
    with pytest.raises(ConfigError, match="callbacks.ema.decay"):
        ema(decay)
    assert ema(None) is None


def test_the_decay_warms_up_to_its_setting():
    updates = torch.tensor([0, 1, 10, 100, 10_000])
    torch.testing.assert_close(warmed_up_decay(0.999, updates), torch.tensor([0.1, 2 / 11, 11 / 20, 101 / 110, 0.999]))


@pytest.mark.parametrize("decay", [None, 0.5])
def test_train_scores_the_same_best_checkpoint_as_eval(tmp_path, decay):
    """train.py's final test runs on best.ckpt's weights (the EMA with callbacks.ema.decay), as eval.py does."""
    ema_setting = "null" if decay is None else str(decay)
    overrides = [*TINY_JOB, "trainer.max_epochs=2", f"callbacks.ema.decay={ema_setting}"]
    run_cli("train", *overrides, log_dir=tmp_path / "train")
    (run_dir,) = run_dirs(tmp_path / "train", "train")
    trained = read_metrics(run_dir)
    run_cli("eval", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "trainer=cpu", log_dir=tmp_path / "eval")
    (eval_dir,) = run_dirs(tmp_path / "eval", "eval")
    evaluated = read_metrics(eval_dir)
    names = [name for name in trained if name.startswith("test/")]
    assert "test/loss" in names
    assert {name: trained[name] for name in names} == pytest.approx({name: evaluated[name] for name in names}, rel=1e-6)


class RecordStartWeights(Callback):
    """The module's weights when training (re)starts."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _fit(tmp_path, *overrides: str, ckpt_path=None, extra=()):
    """Fit TINY_JOB with ``overrides`` and the run's callbacks (checkpoints into ``tmp_path``) as train.py does."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [*TINY_JOB, f"paths.output_dir={tmp_path}", "data.cache_dir=null", *overrides])
    tokenizers = checkpoint_tokenizers(load_checkpoint(ckpt_path)) if ckpt_path else None
    datamodule = instantiate(cfg.data, tokenizers=tokenizers)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.tokenizers_state(), config=plain(cfg))
    callbacks = [*instantiate_group(cfg.callbacks), *extra]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)


def test_resuming_an_average_without_averaging_trains_on_the_raw_weights(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("PROJECT_ROOT", str(ROOT))  # conf/paths reads it, as train.py sets it
    _fit(tmp_path / "first", "callbacks.ema.decay=0.5")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    raw, averaged = saved["current_model_state"], saved["state_dict"]
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw if raw[k].is_floating_point())

    recorder = RecordStartWeights()
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        _fit(tmp_path / "again", "trainer.max_epochs=2", ckpt_path=last, extra=[recorder])
    assert recorder.weights.keys() == raw.keys()
    for name, value in raw.items():
        torch.testing.assert_close(recorder.weights[name], value, rtol=0, atol=0, msg=name)
    dropped = [record.getMessage() for record in caplog.records if "callbacks.ema" in record.getMessage()]
    assert len(dropped) == 1 and "average is dropped" in dropped[0], dropped
