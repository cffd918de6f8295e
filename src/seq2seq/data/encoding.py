"""Tokenizing the text splits into id columns and dropping pairs longer than ``max_length``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from datasets import Dataset, DatasetDict
from datasets.utils import disable_progress_bars, enable_progress_bars, is_progress_bar_enabled
from tokenizers import Tokenizer

from seq2seq.data.tokenizers import encode_batch


@dataclass
class EncodedData:
    """Encoded splits with the tokenizers that made them.

    Attributes:
        splits: ``train``/``val``/``test`` with the columns ``index`` (the row as read), ``source``, ``target``
            (raw text), ``src_ids``, ``tgt_ids`` (ids without special tokens), ``src_len``, ``tgt_len`` and
            ``length`` (their sum).
        src_tokenizer, tgt_tokenizer: the source- and target-side tokenizers.
        dropped: per split, the pairs dropped for being longer than ``max_length``.
    """

    splits: DatasetDict
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    dropped: dict[str, int]


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


def _short_enough(src_len: list[int], tgt_len: list[int], max_length: int) -> list[bool]:
    return [s <= max_length and t <= max_length for s, t in zip(src_len, tgt_len)]


def encode_split(
    dataset: Dataset, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, max_length: int, fingerprint: str
) -> tuple[Dataset, int]:
    """Add the id columns (``Dataset.map(batched=True)``) and drop pairs with a side over ``max_length`` tokens.

    Args:
        fingerprint: a unique name of this encoding, so ``datasets`` need not hash the tokenizers (cache files of
            on-disk datasets are never reused: a stale one could hold another tokenization).

    Returns:
        The encoded split and the number of pairs dropped.
    """
    encoded = dataset.map(
        _encode,
        batched=True,
        with_indices=True,
        batch_size=1000,
        fn_kwargs={"src_tokenizer": src_tokenizer, "tgt_tokenizer": tgt_tokenizer},
        new_fingerprint=f"{fingerprint}-encode",
        load_from_cache_file=False,
        desc="tokenizing",
    )
    kept = encoded.filter(
        _short_enough,
        batched=True,
        batch_size=10_000,
        input_columns=["src_len", "tgt_len"],
        fn_kwargs={"max_length": max_length},
        new_fingerprint=f"{fingerprint}-filter",
        load_from_cache_file=False,
        desc=f"dropping pairs over {max_length} tokens",
    )
    return kept, len(encoded) - len(kept)


def encode_splits(
    raw: DatasetDict, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, max_length: int, fingerprint: str
) -> EncodedData:
    """Encode every split of ``raw`` (see :func:`encode_split`)."""
    splits, dropped = {}, {}
    with quiet_progress():
        for split, dataset in raw.items():
            splits[split], dropped[split] = encode_split(
                dataset, src_tokenizer, tgt_tokenizer, max_length, f"{fingerprint}-{split}"
            )
    return EncodedData(DatasetDict(splits), src_tokenizer, tgt_tokenizer, dropped)
