"""Tokenizing the text splits into id columns: train pairs are filtered, val/test pairs are all kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset, DatasetDict
from datasets.utils import disable_progress_bars, enable_progress_bars, is_progress_bar_enabled
from tokenizers import Tokenizer

from seq2seq.data.tokenizers import encode_batch

# why train pairs are dropped (the keys of EncodedData.dropped)
EMPTY, TOO_LONG = "empty", "too_long"


@dataclass
class EncodedData:
    """Encoded splits with the tokenizers that made them.

    Attributes:
        splits: the encoded splits (``train``/``val``/``test``, or the ones asked for) with the columns ``index``
            (the row as read), ``source``, ``target`` (raw text), ``src_ids``, ``tgt_ids`` (ids without special
            tokens), ``src_len``, ``tgt_len`` and ``length`` (their sum).
        src_tokenizer, tgt_tokenizer: the source- and target-side tokenizers.
        dropped: train pairs dropped, per reason: ``empty`` (no tokens on either side) and ``too_long`` (a side
            over ``max_length`` tokens); empty when train was not encoded.
        truncated: per val/test split, the sources cut to ``max_length`` tokens for decoding.
    """

    splits: DatasetDict
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)


@contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide the ``datasets`` progress bars inside the block (encoding takes about a second), then restore them."""
    enabled = is_progress_bar_enabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            enable_progress_bars()


def _encode(
    batch: dict[str, list], indices: list[int], src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer
) -> dict[str, list]:
    src_ids = encode_batch(src_tokenizer, batch["source"])
    tgt_ids = encode_batch(tgt_tokenizer, batch["target"])
    src_len = [len(ids) for ids in src_ids]
    tgt_len = [len(ids) for ids in tgt_ids]
    return {
        "index": indices,
        "src_ids": src_ids,
        "tgt_ids": tgt_ids,
        "src_len": src_len,
        "tgt_len": tgt_len,
        "length": [s + t for s, t in zip(src_len, tgt_len)],
    }


def _truncate_sources(batch: dict[str, list], max_length: int) -> dict[str, list]:
    src_ids = [ids[:max_length] for ids in batch["src_ids"]]
    src_len = [len(ids) for ids in src_ids]
    return {"src_ids": src_ids, "src_len": src_len, "length": [s + t for s, t in zip(src_len, batch["tgt_len"])]}


def _lengths(encoded: Dataset) -> tuple[np.ndarray, np.ndarray]:
    columns = encoded.select_columns(["src_len", "tgt_len"]).with_format("numpy")[:]
    return columns["src_len"], columns["tgt_len"]


def filter_train(encoded: Dataset, max_length: int, fingerprint: str) -> tuple[Dataset, dict[str, int]]:
    """Drop the train pairs that teach nothing or too much: empty on both sides, or a side over ``max_length``.

    Returns:
        The kept pairs (``index`` still the row as read) and the count dropped per reason.
    """
    src_len, tgt_len = _lengths(encoded)
    empty = (src_len == 0) & (tgt_len == 0)
    too_long = (src_len > max_length) | (tgt_len > max_length)
    kept = encoded.select(np.flatnonzero(~(empty | too_long)), new_fingerprint=f"{fingerprint}-filter")
    return kept, {EMPTY: int(empty.sum()), TOO_LONG: int(too_long.sum())}


def truncate_eval_sources(encoded: Dataset, max_length: int, fingerprint: str) -> tuple[Dataset, int]:
    """Cut val/test sources to ``max_length`` tokens for decoding; every pair and every target stays whole.

    Returns:
        The split and the number of sources cut.
    """
    src_len, _ = _lengths(encoded)
    count = int((src_len > max_length).sum())
    if count:
        encoded = encoded.map(
            _truncate_sources,
            batched=True,
            batch_size=1000,
            fn_kwargs={"max_length": max_length},
            new_fingerprint=f"{fingerprint}-truncate",
            load_from_cache_file=False,
            desc=f"truncating sources to {max_length} tokens",
        )
    return encoded, count


def encode_split(dataset: Dataset, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, fingerprint: str) -> Dataset:
    """Add the id columns (``Dataset.map(batched=True)``); nothing is dropped or cut here.

    Args:
        fingerprint: a unique name of this encoding, so ``datasets`` need not hash the tokenizers (cache files of
            on-disk datasets are never reused: a stale one could hold another tokenization).
    """
    return dataset.map(
        _encode,
        batched=True,
        with_indices=True,
        batch_size=1000,
        fn_kwargs={"src_tokenizer": src_tokenizer, "tgt_tokenizer": tgt_tokenizer},
        new_fingerprint=f"{fingerprint}-encode",
        load_from_cache_file=False,
        desc="tokenizing",
    )


def encode_splits(
    raw: DatasetDict,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    max_length: int,
    fingerprint: str,
    splits: tuple[str, ...] | None = None,
) -> EncodedData:
    """Encode the ``splits`` of ``raw`` (all by default): train is filtered, val/test sources are truncated.

    See :func:`encode_split`, :func:`filter_train` and :func:`truncate_eval_sources`.
    """
    data = EncodedData(DatasetDict(), src_tokenizer, tgt_tokenizer)
    with quiet_progress():
        for split, dataset in raw.items():
            if splits is not None and split not in splits:
                continue
            name = f"{fingerprint}-{split}"
            encoded = encode_split(dataset, src_tokenizer, tgt_tokenizer, name)
            if split == "train":
                data.splits[split], data.dropped = filter_train(encoded, max_length, name)
            else:
                data.splits[split], data.truncated[split] = truncate_eval_sources(encoded, max_length, name)
    return data
