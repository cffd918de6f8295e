"""model.label_smoothing: the training objective is smoothed, val/loss and ppl stay the plain cross-entropy.

(The fused and plain losses with smoothing, their gradients and every teacher-forcing mode: tests/test_loss.py.)
"""

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.nn import functional as F
from torch.utils.data import DataLoader

from seq2seq.config_checks import check_hyperparameters
from seq2seq.data.batching import collate
from seq2seq.data.tokenizers import PAD_ID, encode, tokenizer_to_str, train_tokenizer
from seq2seq.decoding import GreedySearch
from seq2seq.errors import ConfigError
from seq2seq.lit_module import Seq2SeqModule
from seq2seq.modules import Seq2Seq
from seq2seq.teacher_forcing import ConstantSchedule

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a b c d e", "f g h", "b c", "h g f e d c", "a", "d e f g"]


def _module(smoothing: float) -> tuple[Seq2SeqModule, object]:
    tokenizer = train_tokenizer(TEXTS, kind="word", min_freq=1)
    vocab, state = tokenizer.get_vocab_size(), tokenizer_to_str(tokenizer)
    torch.manual_seed(0)  # the same weights for every smoothing
    model = Seq2Seq(
        vocab, vocab, embedding_dim=8, hidden_size=8, attention={"kind": "bahdanau"}, label_smoothing=smoothing
    )
    module = Seq2SeqModule(
        model=model,
        teacher_forcing=ConstantSchedule(1.0),
        decoding=GreedySearch(max_length=8),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        tokenizers={"source": state, "target": state},
        config={},
    )
    return module, tokenizer


def _batch(tokenizer):
    examples = [
        {"index": i, "source": t, "target": t[::-1], "src_ids": encode(tokenizer, t), "tgt_ids": encode(tokenizer, t)}
        for i, t in enumerate(TEXTS)
    ]
    return collate(examples)


def test_validation_loss_and_perplexity_do_not_depend_on_the_smoothing():
    results, train_losses = {}, {}
    for smoothing in (0.0, 0.1):
        module, tokenizer = _module(smoothing)
        batch = _batch(tokenizer)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        (results[smoothing],) = trainer.validate(module, dataloaders=DataLoader([batch], batch_size=None))
        train_losses[smoothing] = module.model.loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
    assert abs(train_losses[0.1] - train_losses[0.0]) > 1e-3  # the smoothing acts on the training objective...
    for name in ("val/loss", "val/ppl", "val/acc"):  # ...and not on what validation reports
        assert results[0.1][name] == results[0.0][name], name


def test_training_step_logs_the_objective_and_the_plain_cross_entropy(monkeypatch):
    module, tokenizer = _module(0.1)
    batch = _batch(tokenizer)
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kwargs: logged.update({name: value}))
    returned = module.training_step(batch, 0)
    with torch.no_grad():
        logits = module.model(batch.src, batch.src_lengths, batch.tgt_in).flatten(0, 1)  # (B·T, V)
    targets = batch.tgt_out.flatten()
    smoothed = F.cross_entropy(logits, targets, ignore_index=PAD_ID, label_smoothing=0.1)
    torch.testing.assert_close(logged["train/loss"], smoothed)
    torch.testing.assert_close(logged["train/nll_loss"], F.cross_entropy(logits, targets, ignore_index=PAD_ID))
    assert returned is logged["train/loss"]  # the smoothed loss is the one trained


def _config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train.yaml", overrides=list(overrides))


@pytest.mark.parametrize("value", ["1.0", "-0.1", "abc", "true"])
def test_label_smoothing_outside_zero_to_one_is_one_error(value):
    with pytest.raises(ConfigError, match=r"model\.label_smoothing=.* is not valid: use a number in \[0, 1\)"):
        check_hyperparameters(_config(f"model.label_smoothing={value}"))


def test_the_key_reaches_the_model_and_is_off_by_default():
    assert instantiate(_config().model, src_vocab_size=9, tgt_vocab_size=9).label_smoothing == 0.0
    cfg = _config("model.label_smoothing=0.1")
    check_hyperparameters(cfg)
    assert instantiate(cfg.model, src_vocab_size=9, tgt_vocab_size=9).label_smoothing == 0.1
