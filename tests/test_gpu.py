"""The GPU path: no host–device synchronisation in a training step, the requested precision, GPU = CPU.

Tests marked ``gpu`` need CUDA and are skipped without it; run them with ``pytest -m gpu`` (or
``bash benchmarks/gpu_check.sh``, which runs them with the benchmarks). The unmarked tests check on the CPU what
can be checked there.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seq2seq.utils.cli import build_module, plain

PAD, SOS, EOS = 0, 2, 3
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
ATTENTIONS = {
    "none": None,
    "bahdanau": {"kind": "bahdanau"},
    "luong": {"kind": "luong", "input_feeding": False},
    "luong_feed": {"kind": "luong", "input_feeding": True},
}


def _config(*overrides: str):
    """The train config of the reverse task, small, with ``overrides``."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "train.yaml",
            overrides=[
                "experiment=reverse",
                "logger=csv",
                "callbacks=none",
                "data.source.num_train=2048",
                "data.source.num_val=128",
                "data.source.num_test=128",
                "data.source.max_length=8",
                "data.cache_dir=null",
                f"paths.root_dir={ROOT}",
                "paths.output_dir=/tmp",
                *overrides,
            ],
        )


def _module_and_data(*overrides: str):
    cfg = _config(*overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return build_module(cfg, datamodule.tokenizers_state(), config=plain(cfg)), datamodule, cfg


def test_training_step_logs_no_python_number_and_nothing_the_progress_bar_reads_back(monkeypatch):
    """A Python float logged (the teacher-forcing ratio) becomes a device tensor by a blocking host-to-device copy,
    and a progress-bar metric is read back with ``.item()`` at every refresh: both wait for the device each step."""
    module, datamodule, _ = _module_and_data("teacher_forcing=linear")
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kwargs: logged.update({name: (value, kwargs)}))
    batch = next(iter(datamodule.train_dataloader()))
    module.training_step(batch, 0)
    assert {"train/loss", "train/tf_ratio"} <= set(logged)
    for name, (value, kwargs) in logged.items():
        assert isinstance(value, torch.Tensor), f"{name} is logged as a {type(value).__name__}"
        assert not kwargs.get("prog_bar", False), f"{name} is on the progress bar"
