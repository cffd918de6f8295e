"""The Multi30k papers' BLEU of a hypotheses file: ``python benchmarks/papers_bleu.py HYPOTHESES LANG [REFERENCE]``.

Lowercases each line of HYPOTHESES (detokenized, e.g. an eval run's ``hypotheses.txt``), normalizes its punctuation
and Moses-tokenizes it (sacremoses), then scores it with sacreBLEU ``tokenize='none'`` against REFERENCE, by default
the bundled ``data/multi30k/test_2016_flickr.lc.norm.tok.LANG``: ``eval.py``'s ``bleu_tok_lc``, for outputs
decoded earlier. Prints ``bleu_tok_lc <score> <signature>``. See ``docs/metrics.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seq2seq import tokenized_bleu  # noqa: E402  (after the path of a source checkout)


def main(argv: list[str] | None = None) -> int:
    """Score; exit 2 with one ``error:`` line on a missing file or a line-count mismatch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hypotheses", type=Path, help="detokenized hypotheses, one per line (hypotheses.txt)")
    parser.add_argument("lang", help="the target language: de or en")
    parser.add_argument(
        "reference", type=Path, nargs="?", help="default: data/multi30k/test_2016_flickr.lc.norm.tok.LANG"
    )
    args = parser.parse_args(argv)
    reference = (
        args.reference or ROOT / "data" / "multi30k" / f"test_2016_flickr.{tokenized_bleu.REFERENCE_INFIX}.{args.lang}"
    )
    for path in (args.hypotheses, reference):
        if not path.is_file():
            print(f"error: {path} not found: give an existing file", file=sys.stderr)
            return 2
    hypotheses = args.hypotheses.read_text(encoding="utf-8").splitlines()
    references = reference.read_text(encoding="utf-8").splitlines()
    if len(hypotheses) != len(references):
        print(
            f"error: {args.hypotheses} has {len(hypotheses)} lines but {reference} has {len(references)}: "
            "score the hypotheses of that test set",
            file=sys.stderr,
        )
        return 2
    score = tokenized_bleu.tokenized_bleu(hypotheses, references, args.lang)
    print(f"{tokenized_bleu.NAME} {score:.2f} {tokenized_bleu.signature()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
