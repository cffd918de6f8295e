"""Tokenizing the text splits into id columns: train pairs are filtered, val/test pairs are all kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, Features, List, Value
from datasets.utils import disable_progress_bars, enable_progress_bars, is_progress_bar_enabled
from tokenizers import Tokenizer

from seq2seq.data.tokenizers import encode_batch

# why train pairs are dropped (the keys of EncodedData.dropped)
EMPTY, TOO_LONG = "empty", "too_long"
TRUNCATED = "truncated"  # val/test sources cut to max_length
BATCH_SIZE = 10_000  # pairs per encode_batch call and per written Arrow record batch
# the columns of an encoded split; ids are int32 (vocabularies are far below 2**31)
FEATURES = Features(
    {
        "source": Value("string"),
        "target": Value("string"),
        "index": Value("int64"),
        "src_ids": List(Value("int32")),
        "tgt_ids": List(Value("int32")),
        "src_len": Value("int64"),
        "tgt_len": Value("int64"),
        "length": Value("int64"),
    }
)
SCHEMA = FEATURES.arrow_schema


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


class SplitEncoder:
    """The batched ``Dataset.map`` function of one split: Arrow text in, Arrow ids out, never the split in Python.

    Each call encodes one batch of pairs (``Tokenizer.encode_batch``, parallel in Rust) and returns it as a
    ``pyarrow.Table`` with the columns of :data:`FEATURES`. Train pairs that are empty on both sides or have a side
    over ``max_length`` tokens are dropped; val/test sources over ``max_length`` are cut. ``counts`` adds up both.
    """

    def __init__(self, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, max_length: int, train: bool) -> None:
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.max_length = max_length
        self.train = train
        self.counts = {EMPTY: 0, TOO_LONG: 0, TRUNCATED: 0}

    def __call__(self, batch: pa.Table, indices: list[int]) -> pa.Table:
        sources, targets = batch.column("source"), batch.column("target")
        src_ids = encode_batch(self.src_tokenizer, sources.to_pylist())
        tgt_ids = encode_batch(self.tgt_tokenizer, targets.to_pylist())
        if not self.train:
            longer = [i for i, ids in enumerate(src_ids) if len(ids) > self.max_length]
            for i in longer:
                src_ids[i] = src_ids[i][: self.max_length]
            self.counts[TRUNCATED] += len(longer)
        src, src_len = _list_array(src_ids)  # (N,) lists, (N,)
        tgt, tgt_len = _list_array(tgt_ids)
        columns = {
            "source": sources,
            "target": targets,
            "index": pa.array(indices, pa.int64()),
            "src_ids": src,
            "tgt_ids": tgt,
            "src_len": src_len,
            "tgt_len": tgt_len,
            "length": src_len + tgt_len,
        }
        table = pa.Table.from_pydict(columns, schema=SCHEMA)
        if self.train:
            empty = (src_len == 0) & (tgt_len == 0)
            too_long = (src_len > self.max_length) | (tgt_len > self.max_length)
            self.counts[EMPTY] += int(empty.sum())
            self.counts[TOO_LONG] += int(too_long.sum())
            keep = ~(empty | too_long)
            if not keep.all():
                table = table.filter(pa.array(keep))
        return table


def _list_array(ids: list[list[int]]) -> tuple[pa.ListArray, np.ndarray]:
    """The id lists of a batch as one Arrow list array of int32, and their lengths ``(N,)`` int64."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))  # (N,)
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)  # (N + 1,)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))  # (sum of lengths,)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)), lengths


def encode_split(
    dataset: Dataset,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    max_length: int,
    fingerprint: str,
    train: bool,
    cache_file: Path | None = None,
) -> tuple[Dataset, dict[str, int]]:
    """Encode one split in one batched ``Dataset.map`` pass (see :class:`SplitEncoder`).

    Args:
        train: filter (train) rather than truncate (val/test).
        fingerprint: a unique name of this encoding, so ``datasets`` need not hash the tokenizers.
        cache_file: the Arrow file the map writes (the data cache); ``None``: where ``datasets`` puts it (next to
            an on-disk dataset's files, else in memory).

    Returns:
        The encoded split and the counts of :class:`SplitEncoder`.
    """
    encoder = SplitEncoder(src_tokenizer, tgt_tokenizer, max_length, train)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
    encoded = (
        dataset.select_columns(["source", "target"])
        .with_format("arrow")
        .map(
            encoder,
            batched=True,
            with_indices=True,
            batch_size=BATCH_SIZE,
            writer_batch_size=BATCH_SIZE,
            features=FEATURES,
            cache_file_name=None if cache_file is None else str(cache_file),
            new_fingerprint=f"{fingerprint}-encode",
            load_from_cache_file=False,
            desc="tokenizing",
        )
    )
    return encoded.with_format(None), encoder.counts


def split_file(folder: Path, split: str) -> Path:
    """Where the encoded ``split`` lies in a cache folder."""
    return folder / "dataset" / split / "data.arrow"


def encode_splits(
    raw: DatasetDict,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    max_length: int,
    fingerprint: str,
    splits: tuple[str, ...] | None = None,
    folder: Path | None = None,
) -> EncodedData:
    """Encode the ``splits`` of ``raw`` (all by default): train is filtered, val/test sources are truncated.

    Args:
        folder: a cache folder to write the encoded splits into (:func:`split_file`); ``None``: see
            :func:`encode_split`.
    """
    data = EncodedData(DatasetDict(), src_tokenizer, tgt_tokenizer)
    with quiet_progress():
        for split, dataset in raw.items():
            if splits is not None and split not in splits:
                continue
            train = split == "train"
            cache_file = None if folder is None else split_file(folder, split)
            encoded, counts = encode_split(
                dataset, src_tokenizer, tgt_tokenizer, max_length, f"{fingerprint}-{split}", train, cache_file
            )
            data.splits[split] = encoded
            if train:
                data.dropped = {EMPTY: counts[EMPTY], TOO_LONG: counts[TOO_LONG]}
            else:
                data.truncated[split] = counts[TRUNCATED]
    return data
