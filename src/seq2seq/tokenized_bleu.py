"""``bleu_tok_lc``: the Multi30k papers' BLEU flavour, on lowercased, normalized, Moses-tokenized text.

Most Multi30k papers score with ``multi-bleu.perl`` against ``test_2016_flickr.lc.norm.tok.<lang>`` (the upstream
reference, lowercased, punctuation-normalized and tokenized with the Moses scripts). Here the hypotheses go through
the same steps in Python (sacremoses: lowercase, ``MosesPunctNormalizer``, ``MosesTokenizer`` with Moses' escaping;
applied to the raw references this reproduces the upstream files line for line) and sacreBLEU scores them with
``tokenize='none'``, so the text is split at spaces only, as multi-bleu does. See ``docs/metrics.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path

from sacrebleu.metrics import BLEU
from sacremoses import MosesPunctNormalizer, MosesTokenizer

log = logging.getLogger("seq2seq")
# the reference of prefix PREFIX and language LANG is PREFIX.lc.norm.tok.LANG (the upstream Multi30k name)
REFERENCE_INFIX = "lc.norm.tok"
NAME = "bleu_tok_lc"


@cache
def _moses(lang: str) -> tuple[MosesPunctNormalizer, MosesTokenizer]:
    return MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)


def moses_lowercase(lines: Sequence[str], lang: str) -> list[str]:
    """Lowercase, normalize punctuation and Moses-tokenize each line (``&apos;``… escaped, as the Moses script)."""
    normalizer, tokenizer = _moses(lang)
    return [tokenizer.tokenize(normalizer.normalize(line.lower()), return_str=True, escape=True) for line in lines]


def scorer() -> BLEU:
    """sacreBLEU's BLEU on pre-tokenized text: ``tokenize='none'``, lowercased (the text already is)."""
    return BLEU(tokenize="none", lowercase=True, force=True)  # force: the text is tokenized on purpose


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str) -> float:
    """BLEU (0–100) of detokenized ``hypotheses`` against already lowercased, tokenized ``references``."""
    return scorer().corpus_score(moses_lowercase(hypotheses, lang), [list(references)]).score


def signature() -> str:
    """sacreBLEU's signature of the score, plus the hypotheses' preprocessing and the sacremoses version."""
    probe = scorer()
    probe.corpus_score(["x"], [["x"]])  # one reference: the signature says nrefs:1
    return f"{probe.get_signature().format()}|pre:{REFERENCE_INFIX}|sacremoses:{version('sacremoses')}"


def reference_file(prefix: str | Path, lang: str) -> Path | None:
    """``PREFIX.lc.norm.tok.<lang>`` when it exists, else ``None``."""
    path = Path(f"{prefix}.{REFERENCE_INFIX}.{lang}")
    return path if path.is_file() else None


def tokenized_bleu_metrics(
    prefix: str | Path | None, lang: str, hypotheses: Sequence[str], stage: str
) -> tuple[dict[str, float], dict[str, str]]:
    """``{"<stage>/bleu_tok_lc": score}`` and ``{"bleu_tok_lc": signature}`` for a split read from the text files
    ``PREFIX.<lang>`` with a tokenized reference ``PREFIX.lc.norm.tok.<lang>`` beside them; else two empty dicts
    (also when the reference has another number of lines than ``hypotheses``, logged).

    Args:
        prefix: the split's text-file prefix, or ``None`` (a source of another kind).
        lang: the target language (the hypotheses' and the reference's).
        hypotheses: detokenized, one per line of the split, in its order.
        stage: ``val`` or ``test``, the metric's prefix.
    """
    reference = reference_file(prefix, lang) if prefix else None
    if reference is None:
        return {}, {}
    lines = reference.read_text(encoding="utf-8").splitlines()
    if len(lines) != len(hypotheses):
        log.warning("%s has %d lines for %d hypotheses: no %s", reference, len(lines), len(hypotheses), NAME)
        return {}, {}
    return {f"{stage}/{NAME}": tokenized_bleu(hypotheses, lines, lang)}, {NAME: signature()}
