"""LR schedules (the scheduler= group): values, when Lightning steps them, what the recipes use, train/lr."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from seq2seq.data.batching import collate
from seq2seq.data.tokenizers import train_tokenizer
from seq2seq.decoding import GreedySearch
from seq2seq.errors import ConfigError
from seq2seq.lit_module import Seq2SeqModule
from seq2seq.modules import Seq2Seq
from seq2seq.schedulers import InverseSqrtLR, LinearWarmupDecayLR, lr_schedule
from seq2seq.teacher_forcing import ConstantSchedule

CONF = Path(__file__).resolve().parents[1] / "conf"
LR = 0.01


def scheduler_config(option: str, **overrides) -> dict:
    """conf/scheduler/<option>.yaml with ``overrides``."""
    return {**OmegaConf.to_container(OmegaConf.load(CONF / "scheduler" / f"{option}.yaml")), **overrides}


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train.yaml", overrides=list(overrides))


def lrs(scheduler, steps: int) -> list[float]:
    """The LR of each of ``steps`` steps (read before the step, as the optimizer applies it)."""
    values = []
    for _ in range(steps):
        values.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def sgd(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_inverse_sqrt_warms_up_linearly_then_decays_with_the_inverse_square_root():
    values = lrs(InverseSqrtLR(sgd(2.0), warmup_steps=4), 7)
    expected = [2.0 * f for f in (1 / 4, 2 / 4, 3 / 4, 1.0, math.sqrt(4 / 5), math.sqrt(4 / 6), math.sqrt(4 / 7))]
    assert values == pytest.approx(expected, rel=1e-12)
    # Vaswani et al.: lr proportional to min(n^-0.5, n * w^-1.5); the peak (n = w) is the optimizer's LR
    assert lrs(InverseSqrtLR(sgd(), warmup_steps=0), 3) == pytest.approx([1.0, 1 / math.sqrt(2), 1 / math.sqrt(3)])


def test_linear_warms_up_then_decays_to_zero_at_the_end_of_the_run():
    values = lrs(LinearWarmupDecayLR(sgd(), warmup_steps=2, total_steps=6), 7)
    assert values == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0], abs=1e-12)
    assert lrs(LinearWarmupDecayLR(sgd(), warmup_steps=0, total_steps=4), 4) == pytest.approx([1, 0.75, 0.5, 0.25])


@pytest.mark.parametrize(
    "cls,kwargs", [(InverseSqrtLR, {"warmup_steps": 3}), (LinearWarmupDecayLR, {"warmup_steps": 3, "total_steps": 9})]
)
def test_schedule_state_resumes_exactly_from_a_weights_only_checkpoint(cls, kwargs, tmp_path):
    full = lrs(cls(sgd(), **kwargs), 8)
    first = cls(sgd(), **kwargs)
    lrs(first, 5)
    torch.save({"optimizer": first.optimizer.state_dict(), "scheduler": first.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # as Lightning restores both
    resumed = cls(sgd(), **kwargs)
    resumed.optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    assert lrs(resumed, 3) == pytest.approx(full[5:])


def test_the_run_length_fills_a_null_argument_and_leaves_a_set_one():
    trainer = SimpleNamespace(estimated_stepping_batches=120, max_epochs=4)
    config = lr_schedule(scheduler_config("cosine")).lightning_config(sgd(), trainer)
    assert config["scheduler"].T_max == 120 and config["interval"] == "step"
    config = lr_schedule(scheduler_config("cosine", interval="epoch")).lightning_config(sgd(), trainer)
    assert config["scheduler"].T_max == 4 and config["interval"] == "epoch"
    config = lr_schedule(scheduler_config("cosine", T_max=50)).lightning_config(sgd(), trainer)
    assert config["scheduler"].T_max == 50
    config = lr_schedule(scheduler_config("linear")).lightning_config(sgd(), trainer)
    assert config["scheduler"].total_steps == 120
    unbounded = SimpleNamespace(estimated_stepping_batches=float("inf"), max_epochs=-1)
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        lr_schedule(scheduler_config("linear")).lightning_config(sgd(), unbounded)


def test_plateau_is_stepped_per_epoch_on_val_loss():
    config = lr_schedule(scheduler_config("plateau")).lightning_config(sgd(), SimpleNamespace())
    assert isinstance(config["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config["interval"] == "epoch" and config["monitor"] == "val/loss"
    other = lr_schedule(scheduler_config("exponential")).lightning_config(sgd(), SimpleNamespace())
    assert "monitor" not in other


def test_options_are_checked_against_the_scheduler():
    assert lr_schedule(None) is None and lr_schedule({}) is None
    assert lr_schedule({"gamma": 0.85}) is None  # scheduler=none after a recipe that set the exponential's gamma
    with pytest.raises(ConfigError, match=r"scheduler.gamma is not an option of .*CosineAnnealingLR.*~scheduler.gamma"):
        lr_schedule(scheduler_config("cosine", gamma=0.85))
    with pytest.raises(ConfigError, match="scheduler.interval='batch'"):
        lr_schedule(scheduler_config("cosine", interval="batch"))


def test_the_default_is_a_constant_lr():
    assert lr_schedule(composed().scheduler) is None


# what the recipes' inline scheduler configs held before the scheduler= group
PLATEAU = (torch.optim.lr_scheduler.ReduceLROnPlateau, {"mode": "min", "factor": 0.5, "patience": 1}, "val/loss")


@pytest.mark.parametrize(
    "recipe,target,options,monitor",
    [
        ("reverse", torch.optim.lr_scheduler.ExponentialLR, {"gamma": 0.85}, None),
        ("multi30k_bahdanau", *PLATEAU),
        ("multi30k_luong", *PLATEAU),
    ],
)
def test_recipes_keep_their_schedules(recipe, target, options, monitor):
    schedule = lr_schedule(composed(f"experiment={recipe}").scheduler)
    assert schedule.factory.func is target
    assert options.items() <= schedule.factory.keywords.items()
    assert schedule.interval == "epoch" and schedule.monitor == monitor


# --- stepped by Lightning in a tiny fit ----------------------------------------------------------------------------


def tiny_module(scheduler: dict | None) -> Seq2SeqModule:
    torch.manual_seed(0)
    tokenizer = train_tokenizer(["a b c d e f"], kind="word", min_freq=1).to_str()
    return Seq2SeqModule(
        model=Seq2Seq(10, 10, embedding_dim=4, hidden_size=8),
        teacher_forcing=ConstantSchedule(1.0),
        decoding=GreedySearch(max_length=4),
        optimizer=lambda params: torch.optim.SGD(params, lr=LR),
        tokenizers={"source": tokenizer, "target": tokenizer},
        config={},
        scheduler=lr_schedule(scheduler),
    )


def loader(num_batches: int) -> DataLoader:
    examples = [{"src_ids": [4, 5, 6], "tgt_ids": [6, 5, 4], "source": "a b c", "target": "c b a"}] * 2
    return DataLoader([collate(examples)] * num_batches, batch_size=None)


def fit(module: Seq2SeqModule, tmp_path: Path, epochs: int, steps: int, validate: bool = False) -> list[dict]:
    """Fit ``epochs`` x ``steps`` and return the CSV logger's rows that hold train/lr."""
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="csv", version=""),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1 if validate else 0,
    )
    trainer.fit(module, train_dataloaders=loader(steps), val_dataloaders=loader(1) if validate else None)
    module.fitted_trainer = trainer
    rows = csv.DictReader(io.StringIO((tmp_path / "csv" / "metrics.csv").read_text()))
    return [row for row in rows if row.get("train/lr")]


def test_a_per_step_schedule_changes_the_lr_at_every_step(tmp_path):
    rows = fit(tiny_module(scheduler_config("linear", warmup_steps=2)), tmp_path, epochs=2, steps=3)
    # 6 steps in the run: warm-up 2 steps, then linear decay to 0 at step 6
    assert [int(row["step"]) for row in rows] == list(range(6))
    expected = [LR * f for f in (0.5, 1.0, 1.0, 0.75, 0.5, 0.25)]
    assert [float(row["train/lr"]) for row in rows] == pytest.approx(expected, rel=1e-6)


def test_a_per_epoch_schedule_keeps_the_lr_within_an_epoch(tmp_path):
    rows = fit(tiny_module(scheduler_config("exponential", gamma=0.5)), tmp_path, epochs=3, steps=2)
    assert [float(row["train/lr"]) for row in rows] == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4, LR / 4])


def test_plateau_reads_val_loss_in_the_fit(tmp_path):
    module = tiny_module(scheduler_config("plateau"))
    rows = fit(module, tmp_path, epochs=1, steps=2, validate=True)
    (config,) = module.fitted_trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (config.monitor, config.interval) == ("val/loss", "epoch")
    assert config.scheduler.best == pytest.approx(module.fitted_trainer.callback_metrics["val/loss"].item())
    assert [float(row["train/lr"]) for row in rows] == pytest.approx([LR, LR])


def test_without_a_schedule_the_lr_is_logged_constant(tmp_path):
    rows = fit(tiny_module(None), tmp_path, epochs=1, steps=3)
    assert [float(row["train/lr"]) for row in rows] == pytest.approx([LR] * 3)
