"""EMA of the weights (callbacks.ema.decay): what validation, the checkpoints and test use."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, TINY_JOB, run_cli, run_dirs
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch import Callback

from seq2seq.build import build_module
from seq2seq.callbacks import ema
from seq2seq.callbacks.weight_averaging import warmed_up_decay
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
    callbacks = [recorder, *[c for c in instantiate_group(cfg.callbacks) if type(c).__name__ == "WeightAveraging"]]
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
