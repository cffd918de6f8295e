"""eval.py's named test sets (data.split=test_2017_flickr…) and the papers' bleu_tok_lc on Multi30k test2016."""

from __future__ import annotations

from pathlib import Path

import pytest
import sacrebleu
from conftest import ROOT, read_metrics, run_cli, run_dirs

from seq2seq import tokenized_bleu
from seq2seq.data.sources import find_parallel_file
from seq2seq.data.test_sets import TEST_SETS, split_names
from seq2seq.data.textio import read_lines

MULTI30K = ROOT / "data" / "multi30k"


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def tiny_deen(tmp_path_factory) -> Path:
    """best.ckpt of a one-epoch de→en model trained on 300 Multi30k pairs (its config: data=multi30k, text files)."""
    root = tmp_path_factory.mktemp("tiny_deen")
    for name, count in (("train", 300), ("val", 40)):
        for lang in ("de", "en"):
            lines = read_lines(find_parallel_file(MULTI30K / name, lang))[:count]
            (root / f"{name}.{lang}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    run_cli(
        "train",
        "trainer=cpu",
        "logger=csv",
        f"data.source.train={root}/train",
        f"data.source.val={root}/val",
        "data.cache_dir=null",
        "data.max_length=12",
        "model.embedding_dim=8",
        "model.hidden_size=16",
        "decoding.max_length=8",  # short hypotheses: a quick eval
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "test=false",
        log_dir=root / "logs",
    )
    (run_dir,) = run_dirs(root / "logs", "train")
    return run_dir / "checkpoints" / "best.ckpt"


def _eval(ckpt: Path, split: str, log_dir: Path) -> tuple[Path, dict]:
    run_cli("eval", f"ckpt_path={ckpt}", f"data.split={split}", "trainer=cpu", log_dir=log_dir)
    (eval_dir,) = run_dirs(log_dir, "eval")
    return eval_dir, read_metrics(eval_dir)


# the smallest in the default suite; the flickr sets, 1,000 and 1,071 lines, only in the slow one
@pytest.mark.parametrize(
    "split",
    [
        pytest.param("test_2017_flickr", marks=pytest.mark.slow),
        "test_2017_mscoco",
        pytest.param("test_2018_flickr", marks=pytest.mark.slow),
    ],
)
def test_a_named_test_set_scores_every_pair_of_its_files(tiny_deen, tmp_path, split):
    eval_dir, metrics = _eval(tiny_deen, split, tmp_path)
    references = _lines(ROOT / "data" / f"{TEST_SETS[split]}.en")  # the bundled file, read directly
    assert metrics["split"] == split and metrics["test/num_sentences"] == len(references)
    rows = _lines(eval_dir / "predictions.tsv")[1:]
    assert [row.split("\t")[0] for row in rows] == [str(i) for i in range(len(references))]
    assert sacrebleu.corpus_bleu(_lines(eval_dir / "hypotheses.txt"), [references]).score == pytest.approx(
        metrics["test/bleu"], abs=1e-9
    )  # scored against that file's references
    assert "test/bleu_tok_lc" not in metrics  # no tokenized reference beside these files


def test_test2016_has_the_papers_tokenized_lowercased_bleu(tiny_deen, tmp_path):
    _, metrics = _eval(tiny_deen, "test_2016_flickr", tmp_path)
    hypotheses = _lines(run_dirs(tmp_path, "eval")[0] / "hypotheses.txt")
    assert metrics["test/num_sentences"] == len(hypotheses) == 1000
    reference = _lines(MULTI30K / "test_2016_flickr.lc.norm.tok.en")
    expected = sacrebleu.corpus_bleu(tokenized_bleu.moses_lowercase(hypotheses, "en"), [reference], tokenize="none")
    assert metrics["test/bleu_tok_lc"] == pytest.approx(expected.score, abs=1e-9)
    assert metrics["signatures"]["bleu_tok_lc"] == tokenized_bleu.signature()


def test_unknown_split_is_one_error_line_listing_the_valid_ones(reverse_run, tmp_path):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    result = run_cli("eval", f"ckpt_path={ckpt}", "data.split=test2017", log_dir=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: unknown data.split 'test2017': use one of {', '.join(split_names())}"
    ]
    assert split_names() == [
        "val",
        "test",
        "test_2016_flickr",
        "test_2017_flickr",
        "test_2017_mscoco",
        "test_2018_flickr",
    ]


@pytest.mark.slow  # a CLI round trip of 10-30 s; the default suite covers its parts
def test_a_named_test_set_needs_a_model_trained_on_text_files(reverse_run, tmp_path):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    result = run_cli("eval", f"ckpt_path={ckpt}", "data.split=test_2017_flickr", log_dir=tmp_path, check=False)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: data.split=test_2017_flickr reads the text files") and "ReverseSource" in line


def test_every_named_test_set_is_bundled_line_aligned():
    counts = {name: [len(_lines(ROOT / "data" / f"{prefix}.{lang}")) for lang in ("de", "en")]
              for name, prefix in TEST_SETS.items()}  # fmt: skip
    expected = {"test_2016_flickr": 1000, "test_2017_flickr": 1000, "test_2017_mscoco": 461, "test_2018_flickr": 1071}
    assert counts == {name: [count, count] for name, count in expected.items()}
