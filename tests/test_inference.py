"""The inference layer: a trained model, its tokenizers and a search, turning lines into n-best translations."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, translate
from hydra import compose, initialize_config_dir

from seq2seq.build import build_module
from seq2seq.checkpoint import checkpoint_tokenizers, load_checkpoint
from seq2seq.data.tokenizers import tokenizer_from_str
from seq2seq.decoding import BeamSearch, GreedySearch, SampleSearch
from seq2seq.errors import ConfigError
from seq2seq.inference import Translator, load_translator


@pytest.fixture(scope="module")
def translator(reverse_run):
    return load_translator(str(reverse_run / "checkpoints" / "best.ckpt"))


def test_translations_equal_translate_py(reverse_run, translator):
    lines = ["t1 t2 t3", "t4 t5", "t3 t3 t1 t2"]
    expected = translate(reverse_run / "checkpoints" / "best.ckpt", "\n".join(lines) + "\n").stdout.splitlines()
    assert [result.hypotheses[0].text for result in translator.translate(lines)] == expected


def test_every_search_returns_nbest_lists_the_same_way(translator):
    lines = ["t1 t2 t3", "", "t4 t5"]
    for search, n in [(GreedySearch(), 1), (BeamSearch(beam_size=3, nbest=3), 3), (SampleSearch(top_k=3), 1)]:
        results = translator.translate(lines, search)
        assert [len(result.hypotheses) for result in results] == [n, n, n]
        assert results[1].hypotheses[0].text == ""  # a blank line gets empty hypotheses
        scores = [hypothesis.score for hypothesis in results[0].hypotheses]
        assert scores == sorted(scores, reverse=True)


def test_beam_of_one_equals_greedy(translator):
    lines = ["t1 t2 t3 t4", "t5 t1"]
    greedy = translator.translate(lines, GreedySearch())
    beam = translator.translate(lines, BeamSearch(beam_size=1))
    assert [r.hypotheses[0].text for r in greedy] == [r.hypotheses[0].text for r in beam]
    assert [r.hypotheses[0].score for r in greedy] == pytest.approx([r.hypotheses[0].score for r in beam], abs=1e-5)


@pytest.fixture(scope="module")
def attentive(reverse_run):
    """A Translator over an untrained Bahdanau model with the reverse run's tokenizers (attention needs no training)."""
    tokenizers = checkpoint_tokenizers(load_checkpoint(reverse_run / "checkpoints" / "best.ckpt"))
    overrides = ["experiment=reverse", "attention=bahdanau", "model.hidden_size=16", "model.embedding_dim=8"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    torch.manual_seed(0)
    module = build_module(cfg, tokenizers, config={}).eval()
    return Translator(
        module.model,
        tokenizer_from_str(tokenizers["source"]),
        tokenizer_from_str(tokenizers["target"]),
        {"_target_": "seq2seq.decoding.GreedySearch", "max_length": 6},
    )


def test_attention_is_one_row_per_output_token_over_the_source_tokens(attentive):
    translator = attentive
    (result,) = translator.translate(["t1 t2 t3"], BeamSearch(beam_size=2, nbest=2), attention=True)
    assert result.source_tokens[-1] == "<eos>" and len(result.source_tokens) == 4
    for hypothesis in result.hypotheses:
        assert hypothesis.tokens[-1] == "<eos>"
        assert len(hypothesis.attention) == len(hypothesis.tokens)
        for row in hypothesis.attention:
            assert len(row) == len(result.source_tokens) and sum(row) == pytest.approx(1.0, abs=1e-4)
    assert translator.translate(["t1"])[0].hypotheses[0].attention is None  # only when asked for


def test_make_search_builds_on_the_default_and_refuses_bad_settings(translator):
    assert isinstance(translator.make_search({}), type(translator.search))
    beam = translator.make_search({"beam_size": 4, "nbest": 2, "length_penalty": 0.6})
    assert isinstance(beam, BeamSearch) and (beam.beam_size, beam.nbest, beam.alpha) == (4, 2, 0.6)
    assert isinstance(translator.make_search({"temperature": 0.5}), SampleSearch)
    assert isinstance(translator.make_search({"decoding": "greedy", "max_length": 7}), GreedySearch)
    for settings, message in [
        ({"beam_size": 0}, "beam_size must be >= 1"),
        ({"beam_size": 2, "nbest": 3}, "nbest must be between 1"),
        ({"decoding": "magic"}, "unknown decoding 'magic'"),
        ({"decoding": "greedy", "beam_size": 3}, "greedy decoding takes no beam_size"),
    ]:
        with pytest.raises(ConfigError, match=message):
            translator.make_search(settings)


def test_info_describes_the_model(translator):
    info = translator.info()
    assert info["backend"] == "torch" and info["parameters"] > 0 and info["source_vocab_size"] > 3
    assert info["decoding"]["name"] in ("greedy", "beam", "sample")
    assert "test/bleu" in info["metrics"][0] and "signatures" in info["metrics"][0]
