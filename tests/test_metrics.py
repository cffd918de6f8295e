"""Validation/test metrics: each BLEU/chrF figure equals sacreBLEU's own, references cased as the data, signatures."""

from __future__ import annotations

import functools
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
import torch

from seq2seq import tokenized_bleu
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


# --- bleu_tok_lc: the Multi30k papers' lowercased, Moses-tokenized BLEU ---------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT / "data" / "multi30k"


@pytest.mark.parametrize("lang", ["de", "en"])
def test_moses_preprocessing_reproduces_the_upstream_tokenized_reference(lang):
    raw = (MULTI30K / f"test_2016_flickr.{lang}").read_text(encoding="utf-8").splitlines()
    tokenized = (MULTI30K / f"test_2016_flickr.lc.norm.tok.{lang}").read_text(encoding="utf-8").splitlines()
    assert tokenized_bleu.moses_lowercase(raw, lang) == tokenized  # all 1,000 lines
    assert tokenized_bleu.tokenized_bleu(raw, tokenized, lang) == pytest.approx(100.0)


def test_tokenized_bleu_equals_sacrebleu_on_hand_tokenized_text():
    hypotheses = ["A man, in a red hat.", "It's a dog's \"toy\" & a ball!", "Zwei Männer stehen."]
    references = ["a man in a red hat .", "it &apos;s a dog &apos;s toy &amp; a ball !", "zwei männer sitzen ."]
    # lowercased and tokenized by hand, as the Moses scripts do (escaped quote and ampersand, split clitics)
    by_hand = ["a man , in a red hat .", "it &apos;s a dog &apos;s &quot; toy &quot; &amp; a ball !"]
    by_hand.append("zwei männer stehen .")
    assert tokenized_bleu.moses_lowercase(hypotheses, "en") == by_hand
    expected = sacrebleu.corpus_bleu(by_hand, [references], tokenize="none")
    assert tokenized_bleu.tokenized_bleu(hypotheses, references, "en") == pytest.approx(expected.score, abs=1e-9)
    # and not what 13a on the detokenized, lowercased text gives
    plain = sacrebleu.corpus_bleu([h.lower() for h in hypotheses], [references], tokenize="13a").score
    assert plain != pytest.approx(expected.score)
    assert tokenized_bleu.signature().startswith("nrefs:1|case:lc|eff:no|tok:none|smooth:exp|version:")


def test_tokenized_bleu_metrics_only_where_a_tokenized_reference_lies_beside_the_split(tmp_path):
    hypotheses = (MULTI30K / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    scores, signatures = tokenized_bleu.tokenized_bleu_metrics(MULTI30K / "test_2016_flickr", "en", hypotheses, "test")
    assert scores == {"test/bleu_tok_lc": pytest.approx(100.0)} and list(signatures) == ["bleu_tok_lc"]
    for prefix in (MULTI30K / "test_2017_flickr", None):
        assert tokenized_bleu.tokenized_bleu_metrics(prefix, "en", hypotheses, "test") == ({}, {})
    assert tokenized_bleu.tokenized_bleu_metrics(MULTI30K / "test_2016_flickr", "en", hypotheses[:5], "val") == ({}, {})


def test_papers_bleu_script_and_the_command_lines_give_the_direct_sacrebleu_score(tmp_path, capsys):
    """benchmarks/papers_bleu.py, and the sacremoses | sacrebleu pipeline of docs/metrics.md, on a small case."""
    hypotheses = ["A man, in a red hat.", "Two dogs don't play in the snow!", "A woman sits on a bench."]
    references = ["a man in a red hat .", "two dogs do n&apos;t play in snow .", "a woman is sitting on a bench ."]
    (tmp_path / "hyp.txt").write_text("".join(f"{line}\n" for line in hypotheses), encoding="utf-8")
    (tmp_path / "ref.tok").write_text("".join(f"{line}\n" for line in references), encoding="utf-8")
    by_hand = ["a man , in a red hat .", "two dogs don &apos;t play in the snow !", "a woman sits on a bench ."]
    expected = sacrebleu.corpus_bleu(by_hand, [references], tokenize="none").score

    script = importlib.util.spec_from_file_location("papers_bleu", ROOT / "benchmarks" / "papers_bleu.py")
    papers_bleu = importlib.util.module_from_spec(script)
    script.loader.exec_module(papers_bleu)
    assert papers_bleu.main([str(tmp_path / "hyp.txt"), "en", str(tmp_path / "ref.tok")]) == 0
    name, score, signature = capsys.readouterr().out.split()
    assert (name, float(score), signature) == ("bleu_tok_lc", round(expected, 2), tokenized_bleu.signature())

    bin_dir = Path(sys.executable).parent
    pipeline = (
        f"{sys.executable} -c 'import sys; sys.stdout.writelines(l.lower() for l in sys.stdin)' < hyp.txt"
        f" | {bin_dir / 'sacremoses'} -q -l en -j 1 normalize | {bin_dir / 'sacremoses'} -q -l en -j 1 tokenize -x"
        f" | {bin_dir / 'sacrebleu'} ref.tok -tok none -lc --force -b -w 2"
    )
    result = subprocess.run(pipeline, shell=True, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert float(result.stdout) == round(expected, 2)
