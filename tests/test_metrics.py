"""Validation/test metrics: each BLEU/chrF figure equals sacreBLEU's own, references cased as the data, signatures."""

from __future__ import annotations

import functools
import math

import pytest
import sacrebleu
import torch

from seq2seq.data.batching import collate
from seq2seq.data.tokenizers import encode, tokenizer_to_str, train_tokenizer
from seq2seq.decoding import GreedySearch
from seq2seq.lit_module import Seq2SeqModule
from seq2seq.metrics import Seq2SeqMetrics
from seq2seq.modules import Seq2Seq
from seq2seq.teacher_forcing import ConstantSchedule

# Cased, punctuated sentences; the third shares no 4-gram with its reference (BLEU's smoothing matters there),
# the last differs from its reference only in case.
HYPOTHESES = [
    "The cat sat on the mat.",
    "a dog runs in the park",
    "Hello world !",
    "It is raining today, isn't it?",
    "see you tomorrow",
]
REFERENCES = [
    "The cat is on the mat.",
    "A dog is running in the park.",
    "Hello, World!",
    "It's raining today, isn't it?",
    "See you tomorrow",
]


def _scored(lowercase: bool = False, batches: int = 2) -> dict[str, float]:
    """Seq2SeqMetrics over HYPOTHESES/REFERENCES fed in ``batches`` parts (teacher-forced logits are dummies)."""
    metrics = Seq2SeqMetrics(lowercase=lowercase)
    size = math.ceil(len(HYPOTHESES) / batches)
    for start in range(0, len(HYPOTHESES), size):
        hyps, refs = HYPOTHESES[start : start + size], REFERENCES[start : start + size]
        logits, targets = torch.zeros(len(hyps), 2, 5), torch.ones(len(hyps), 2, dtype=torch.long)
        metrics.update(logits, targets, 0, hyps, refs)
    return metrics.compute()


def test_bleu_and_chrf_equal_sacrebleu_on_the_same_corpus():
    scores = _scored()
    refs = [REFERENCES]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, refs).score, abs=1e-9)
    assert scores["bleu_lc"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, refs, lowercase=True).score, abs=1e-9)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, refs).score, abs=1e-9)
    assert scores["chrf++"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, refs, word_order=2).score, abs=1e-9)
    assert scores["bleu_lc"] > scores["bleu"] > 0 and scores["chrf"] != scores["chrf++"]
    assert scores["num_sentences"] == len(HYPOTHESES)
    assert scores["exact_match"] == 0.0


def test_bleu_without_a_matching_4gram_is_smoothed_like_sacrebleu():
    """Short sentences often share no 4-gram: sacreBLEU's default exp smoothing still gives a score, not 0."""
    hypotheses, references = ["the cat sat here", "a dog barks"], ["the cat sat on the mat", "the dog barks"]
    metrics = Seq2SeqMetrics()
    metrics.update(torch.zeros(2, 2, 5), torch.ones(2, 2, dtype=torch.long), 0, hypotheses, references)
    expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert expected > 30
    assert metrics.compute()["bleu"] == pytest.approx(expected, abs=1e-9)


def test_batching_does_not_change_the_corpus_scores():
    one, many = _scored(batches=1), _scored(batches=5)
    for name in ("bleu", "bleu_lc", "chrf", "chrf++", "exact_match", "num_sentences"):
        assert one[name] == many[name], name


def test_lowercased_data_is_scored_against_lowercased_references():
    """With data.lowercase=true the model can only write lowercase: its references are lowercased too."""
    hypotheses = [h.lower() for h in HYPOTHESES]
    metrics = Seq2SeqMetrics(lowercase=True)
    metrics.update(torch.zeros(5, 2, 5), torch.ones(5, 2, dtype=torch.long), 0, hypotheses, REFERENCES)
    scores = metrics.compute()
    lowered = [[r.lower() for r in REFERENCES]]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, lowered).score, abs=1e-9)
    assert scores["bleu"] == scores["bleu_lc"]
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, lowered).score, abs=1e-9)
    assert scores["chrf++"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, lowered, word_order=2).score, abs=1e-9)
    assert scores["exact_match"] == pytest.approx(1 / 5)  # "see you tomorrow" == "See you tomorrow".lower()


def test_signatures_are_sacrebleus_own():
    version = sacrebleu.__version__
    assert Seq2SeqMetrics().signatures() == {
        "bleu": f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{version}",
        "bleu_lc": f"nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:{version}",
        "chrf": f"nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{version}",
        "chrf++": f"nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:{version}",
    }
    assert Seq2SeqMetrics(lowercase=True).signatures()["bleu"].startswith("nrefs:1|case:lc|")


def test_loss_ppl_acc_exact_match():
    logits = torch.log(torch.tensor([[[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], [[0.7, 0.2, 0.1], [0.5, 0.4, 0.1]]]))
    targets = torch.tensor([[1, 2], [2, 0]])  # (B, T); 0 is padding
    metrics = Seq2SeqMetrics()
    metrics.update(logits, targets, 0, ["a b", "c"], ["a b", "d"])
    scores = metrics.compute()
    loss = -(math.log(0.6) + math.log(0.6) + math.log(0.1)) / 3
    assert scores["loss"] == pytest.approx(loss, rel=1e-6)
    assert scores["ppl"] == pytest.approx(math.exp(loss), rel=1e-6)
    assert scores["acc"] == pytest.approx(2 / 3)
    assert scores["exact_match"] == 0.5 and scores["num_sentences"] == 2
    metrics.reset()
    metrics.update(logits[:1], targets[:1], 0, ["x"], ["x"])
    assert metrics.compute()["num_sentences"] == 1  # reset forgets the earlier pass


def _module(lowercase: bool) -> tuple[Seq2SeqModule, object]:
    tokenizer = train_tokenizer(["a b c d e", "f g h"], min_freq=1, lowercase=lowercase)
    state = tokenizer_to_str(tokenizer)
    torch.manual_seed(0)
    model = Seq2Seq(tokenizer.get_vocab_size(), tokenizer.get_vocab_size(), cell="gru", embedding_dim=8, hidden_size=8)
    module = Seq2SeqModule(
        model=model,
        teacher_forcing=ConstantSchedule(),
        decoding=GreedySearch(max_length=6),
        optimizer=functools.partial(torch.optim.Adam),
        tokenizers={"source": state, "target": state},
        config={"data": {"lowercase": lowercase}},
    )
    return module, tokenizer


@pytest.mark.parametrize("lowercase", [False, True])
def test_module_takes_the_lowercase_flag_from_its_run_config(lowercase):
    module, _ = _module(lowercase)
    assert module.val_metrics.lowercase is lowercase and module.test_metrics.lowercase is lowercase


def test_module_predictions_come_back_in_input_order():
    module, tokenizer = _module(False)
    texts = ["a b c", "d", "e f g h", "b", "c d"]
    examples = [
        {"index": i, "source": t, "target": t, "src_ids": encode(tokenizer, t), "tgt_ids": encode(tokenizer, t)}
        for i, t in enumerate(texts)
    ]
    module.on_test_epoch_start()
    for batch in ([examples[3], examples[1]], [examples[4], examples[0], examples[2]]):  # length order, as dealt
        module._evaluate(collate(batch), module.test_metrics)
    module._collect_predictions()
    assert [p.index for p in module.predictions] == list(range(5))
    assert [p.source for p in module.predictions] == texts
    assert [p.reference for p in module.predictions] == texts
