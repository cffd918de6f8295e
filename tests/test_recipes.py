"""The multi30k_best_* recipes and their search compose, with the features they promise switched on."""

from __future__ import annotations

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir


@pytest.mark.parametrize("name,pair", [("multi30k_best_deen", ("de", "en")), ("multi30k_best_ende", ("en", "de"))])
def test_best_recipes_turn_the_toolkit_features_on(name, pair, monkeypatch):
    monkeypatch.setenv("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [f"experiment={name}"])
    assert (cfg.data.source_lang, cfg.data.target_lang) == pair
    assert cfg.model.label_smoothing > 0 and cfg.model.tie_embeddings == "decoder"
    assert cfg.callbacks.ema.decay and cfg.callbacks.early_stopping.patience
    assert cfg.decoding._target_.endswith("BeamSearch") and cfg.model.attention.kind == "bahdanau"


def test_the_recipes_search_replaces_the_generic_search_space(monkeypatch):
    monkeypatch.setenv("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train", ["experiment=multi30k_best_deen", "hparams_search=multi30k_best"], return_hydra_config=True
        )
    params = cfg.hydra.sweeper.params
    assert {"model.label_smoothing", "model.tie_embeddings", "decoding.length_penalty"} <= set(params)
    assert cfg.trainer.max_epochs == 4 and cfg.callbacks.early_stopping.patience is None
