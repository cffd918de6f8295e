"""The Lightning datamodule: load pairs, train tokenizers on train, encode, cache, and serve bucketed batches."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import numpy as np
import tokenizers as hf_tokenizers
import torch
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer
from torch import Tensor
from torch.utils.data import DataLoader

from seq2seq.data.base import SPLITS, discard_scratch
from seq2seq.data.batching import collate, pad_source
from seq2seq.data.cache import cache_key, load_cached, save_cached, staging_folder
from seq2seq.data.encoding import BATCH_SIZE, EMPTY, TOO_LONG, EncodedData, encode_splits
from seq2seq.data.samplers import BucketBatchSampler, ResumableDataLoader
from seq2seq.data.tokenizers import (
    EOS_ID,
    KINDS,
    PAD_ID,
    SOS_ID,
    decode,
    encode_batch,
    tokenizer_from_str,
    tokenizer_to_str,
    train_tokenizer,
)
from seq2seq.errors import ConfigError, DataError

log = logging.getLogger("seq2seq.data")
# the columns a batch is made of (see batching.collate)
_BATCH_COLUMNS = ["index", "source", "target", "src_ids", "tgt_ids"]
# the tokenizers of a large corpus learn from this many train pairs by default (see data.tokenizer_sample)
TOKENIZER_SAMPLE = 1_000_000
TOKENIZER_SAMPLE_SEED = 0  # fixed: the tokenizers must not change with the training seed


class Seq2SeqDataModule(L.LightningDataModule):
    """Text pairs -> tokenizers (trained on train only) -> encoded, cached splits -> batches.

    Only train is filtered (pairs over ``max_length`` or empty on both sides are dropped, with a logged count);
    val/test keep every pair, 1:1 with the input, and only their sources are cut to ``max_length`` for decoding.

    Args:
        source: an object with ``load() -> DatasetDict`` (see ``seq2seq.data.sources``); its ``cache_key()``, if
            any, goes into the cache key.
        source_lang, target_lang: the languages (names only; the source decides what is read).
        tokenizer: ``"word"``, ``"bpe"`` or ``"char"``, for both sides.
        vocab_size: the largest vocabulary per side (or of the joint one), special tokens included.
        min_freq: tokens (or BPE merges) seen fewer times in train are left out.
        lowercase: lowercase all text before tokenizing.
        joint_vocab: train one tokenizer on the source and target train text and use it for both sides (a
            shared vocabulary, as ``model.tie_embeddings=all`` needs); the run dir then holds ``tokenizer.json``.
        tokenizer_sample: train the tokenizers on at most this many train pairs, a fixed random sample of a larger
            train split (``None``: on all); every pair is still encoded. Caps the tokenizer training time of very
            large corpora (1M pairs by default, so smaller corpora are unaffected).
        max_length: train pairs with more tokens than this on either side (specials not counted) are dropped;
            longer val/test sources are truncated to it (their targets are kept whole).
        batch_size: pairs per batch.
        num_workers: ``DataLoader`` worker processes.
        pin_memory: ``DataLoader`` pinned memory; ``None`` = when training on a CUDA device.
        seed: the batch shuffle seed (varied per epoch).
        cache_dir: where encoded splits are cached (one folder per configuration); ``None`` disables caching.
        tokenizers: ``{"source": json, "target": json}`` from a checkpoint: use these instead of training new ones.
        splits: the splits to encode (all three by default); ``eval.py`` asks for the one it evaluates.
    """

    def __init__(
        self,
        source: Any,
        source_lang: str,
        target_lang: str,
        tokenizer: str = "word",
        vocab_size: int = 10000,
        min_freq: int = 2,
        lowercase: bool = False,
        joint_vocab: bool = False,
        tokenizer_sample: int | None = TOKENIZER_SAMPLE,
        max_length: int = 100,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 42,
        cache_dir: str | None = None,
        tokenizers: Mapping[str, str] | None = None,
        splits: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if tokenizer not in KINDS:
            raise ConfigError(f"unknown data.tokenizer {tokenizer!r}: use one of {', '.join(KINDS)}")
        sizes = [("vocab_size", vocab_size), ("max_length", max_length), ("batch_size", batch_size)]
        if tokenizer_sample is not None:
            sizes.append(("tokenizer_sample", tokenizer_sample))
        for name, value in sizes:
            if value < 1:
                raise ConfigError(f"data.{name}={value}: must be at least 1")
        wanted = SPLITS if splits is None else [str(split) for split in splits]
        if not wanted or not set(wanted) <= set(SPLITS):
            raise ConfigError(f"splits={wanted}: encode one or more of {', '.join(SPLITS)}")
        if not callable(getattr(source, "load", None)):
            raise ConfigError(f"data.source is a {type(source).__name__}, not a source: give it a _target_")
        self.source = source
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.min_freq = min_freq
        self.lowercase = lowercase
        self.joint_setting = joint_vocab  # what was asked; `joint_vocab` says what the tokenizers are
        self.tokenizer_sample = tokenizer_sample
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.splits = tuple(split for split in SPLITS if split in wanted)  # the splits to encode, in order
        self._given: tuple[Tokenizer, Tokenizer] | None = None
        self._given_state: dict[str, str] | None = None
        if tokenizers is not None:
            missing = {"source", "target"} - set(tokenizers)
            if missing:
                raise DataError(f"stored tokenizers lack {', '.join(sorted(missing))}: re-create the checkpoint")
            self._given_state = {"source": str(tokenizers["source"]), "target": str(tokenizers["target"])}
            self._given = (
                tokenizer_from_str(self._given_state["source"]),
                tokenizer_from_str(self._given_state["target"]),
            )
        self._data: EncodedData | None = None
        self._lengths: dict[str, np.ndarray] = {}
        # True: the encoded data came from the cache; False: it was tokenized here; None: not loaded yet.
        self.cache_hit: bool | None = None

    # --- caching ----------------------------------------------------------------------------------------------

    def _cache_payload(self) -> dict[str, Any]:
        key = getattr(self.source, "cache_key", None)
        source = key() if callable(key) else {"class": type(self.source).__qualname__, "repr": repr(self.source)}
        if self._given_state is not None:
            text = self._given_state["source"] + "\0" + self._given_state["target"]
            tokenization: dict[str, Any] = {"given": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        else:
            tokenization = {
                "kind": self.tokenizer,
                "vocab_size": self.vocab_size,
                "min_freq": self.min_freq,
                "lowercase": self.lowercase,
            }
            if self.joint_setting:  # only when on, so the keys of existing caches stay what they were
                tokenization["joint"] = True
            if self.tokenizer_sample != TOKENIZER_SAMPLE:  # likewise
                tokenization["sample"] = self.tokenizer_sample
        return {
            "source": source,
            "tokenization": tokenization,
            "max_length": self.max_length,
            "splits": list(self.splits),
            "libraries": {"datasets": datasets.__version__, "tokenizers": hf_tokenizers.__version__},
        }

    def cache_path(self) -> Path | None:
        """This configuration's cache folder (``cache_dir/<hash>``), or ``None`` without a ``cache_dir``."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / cache_key(self._cache_payload())

    # --- building ---------------------------------------------------------------------------------------------

    def _load_raw(self) -> DatasetDict:
        raw = self.source.load()
        for split in SPLITS:
            if split not in raw:
                raise DataError(f"the data source gave no {split} split (splits: {', '.join(raw)}): fix data.source")
            missing = {"source", "target"} - set(raw[split].column_names)
            if missing:
                raise DataError(f"the {split} split has no column {', '.join(sorted(missing))}: fix data.source")
        return raw

    def _tokenizer_pairs(self, train: Dataset) -> Dataset:
        """The train pairs the tokenizers learn from: all, or a fixed random ``tokenizer_sample`` of them."""
        if self.tokenizer_sample is None or len(train) <= self.tokenizer_sample:
            return train
        rows = np.random.default_rng(TOKENIZER_SAMPLE_SEED).choice(len(train), self.tokenizer_sample, replace=False)
        return train.select(np.sort(rows))  # (tokenizer_sample,) rows in file order

    @staticmethod
    def _texts(pairs: Dataset, column: str) -> Iterator[list[str]]:
        """One column in batches of ``BATCH_SIZE`` sentences (never the whole split at once)."""
        for table in pairs.select_columns([column]).with_format("arrow").iter(batch_size=BATCH_SIZE):
            yield table.column(column).to_pylist()

    def _train_tokenizers(self, train: Dataset) -> tuple[Tokenizer, Tokenizer]:
        settings = {
            "kind": self.tokenizer,
            "vocab_size": self.vocab_size,
            "min_freq": self.min_freq,
            "lowercase": self.lowercase,
        }
        pairs = self._tokenizer_pairs(train)
        if self.joint_setting:
            log.info("training one joint %s tokenizer on %d of %d train pairs", self.tokenizer, len(pairs), len(train))
            tokenizer = train_tokenizer(chain(self._texts(pairs, "source"), self._texts(pairs, "target")), **settings)
            return tokenizer, tokenizer
        log.info("training %s tokenizers on %d of %d train pairs", self.tokenizer, len(pairs), len(train))
        return (
            train_tokenizer(self._texts(pairs, "source"), **settings),
            train_tokenizer(self._texts(pairs, "target"), **settings),
        )

    def _build(self, fingerprint: str, folder: Path | None = None) -> EncodedData:
        """Read, train the tokenizers (unless given), encode; the encoded splits go into ``folder`` if given."""
        raw = self._load_raw()
        if self._given is not None:
            src_tokenizer, tgt_tokenizer = self._given
            log.info("using the given tokenizers (not training new ones)")
        else:
            src_tokenizer, tgt_tokenizer = self._train_tokenizers(raw["train"])
        log.info("tokenizing the %s split(s)", ", ".join(self.splits))
        data = encode_splits(raw, src_tokenizer, tgt_tokenizer, self.max_length, fingerprint, self.splits, folder)
        if folder is not None:  # the encoded splits lie in the cache: the raw text's scratch copy is done with
            discard_scratch(raw)
        if "train" in data.splits and len(data.splits["train"]) == 0:
            if data.dropped[TOO_LONG]:
                raise DataError(
                    f"every train pair is longer than data.max_length={self.max_length} tokens "
                    "(or empty on both sides): raise data.max_length"
                )
            raise DataError("every train pair is empty on both sides: give the train split some text")
        return data

    def _report(self, data: EncodedData) -> None:
        """Log what was dropped from train and what was truncated in val/test."""
        if "train" in data.splits:
            total = len(data.splits["train"]) + sum(data.dropped.values())
            too_long, empty = data.dropped[TOO_LONG], data.dropped[EMPTY]
            log.info("train: dropped %d of %d pairs longer than max_length=%d", too_long, total, self.max_length)
            if empty:
                log.info("train: dropped %d of %d pairs empty on both sides", empty, total)
        for split, count in data.truncated.items():
            # Cut sources change what is evaluated: say so louder.
            log.log(
                logging.WARNING if count else logging.INFO,
                "%s: %d of %d sources longer than max_length=%d tokens are truncated for decoding; "
                "references are scored in full",
                split,
                count,
                len(data.splits[split]),
                self.max_length,
            )

    def _load_or_build(self) -> None:
        """Load the cache, or tokenize and write it (replacing a damaged one)."""
        path = self.cache_path()
        data = load_cached(path) if path is not None else None
        if data is not None:
            self.cache_hit = True
            log.info("loaded the tokenized data from the cache %s (tokenization skipped)", path)
        else:
            self.cache_hit = False
            if path is None:
                data = self._build(cache_key(self._cache_payload()))
                log.info("tokenized the data (caching is off)")
            else:
                with staging_folder(path) as folder:  # the encoding writes its Arrow files straight into it
                    data = self._build(cache_key(self._cache_payload()), folder)
                if save_cached(data, path, self._cache_payload(), replace=path.exists(), staged=folder):
                    log.info("tokenized the data and wrote the cache %s", path)
                    # map the files where they now lie (the staging folder is gone), e.g. for worker processes
                    data = load_cached(path) or data
        self._report(data)
        self._data = data

    def prepare_data(self) -> None:
        """Tokenize and write the cache if it is missing or unreadable (Lightning runs this on one process per node).

        This process keeps what it loaded or built, so its ``setup`` has nothing left to do; the other ranks read
        the cache in ``setup``.
        """
        if self._data is None and self.cache_dir is not None:
            self._load_or_build()

    def setup(self, stage: str | None = None) -> None:
        """Load the encoded splits: from the cache when it exists, else tokenize now (and cache)."""
        if self._data is None:
            self._load_or_build()

    # --- tokenizers -------------------------------------------------------------------------------------------

    def _tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        if self._data is not None:
            return self._data.src_tokenizer, self._data.tgt_tokenizer
        if self._given is not None:
            return self._given
        raise RuntimeError("Seq2SeqDataModule: call prepare_data() and setup() before using the tokenizers")

    @property
    def src_tokenizer(self) -> Tokenizer:
        """The source-side tokenizer."""
        return self._tokenizers()[0]

    @property
    def tgt_tokenizer(self) -> Tokenizer:
        """The target-side tokenizer."""
        return self._tokenizers()[1]

    @property
    def src_vocab_size(self) -> int:
        """Source vocabulary size, special tokens included."""
        return self.src_tokenizer.get_vocab_size()

    @property
    def tgt_vocab_size(self) -> int:
        """Target vocabulary size, special tokens included."""
        return self.tgt_tokenizer.get_vocab_size()

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``."""
        return PAD_ID

    @property
    def sos_id(self) -> int:
        """Id of ``<sos>``."""
        return SOS_ID

    @property
    def eos_id(self) -> int:
        """Id of ``<eos>``."""
        return EOS_ID

    @property
    def joint_vocab(self) -> bool:
        """Whether both sides use one tokenizer (one vocabulary, the same ids): trained so, or given so."""
        state = self.tokenizers_state()
        return state["source"] == state["target"]

    def tokenizers_state(self) -> dict[str, str]:
        """``{"source": json, "target": json}``: what a checkpoint stores and ``tokenizers=`` takes back.

        A joint vocabulary stores the same JSON under both keys, so readers of either side need no flag.
        """
        return {"source": tokenizer_to_str(self.src_tokenizer), "target": tokenizer_to_str(self.tgt_tokenizer)}

    def save_tokenizers(self, dirpath: str | Path) -> None:
        """Write ``tokenizer.source.json`` and ``tokenizer.target.json`` into ``dirpath``.

        With ``joint_vocab=True`` the one tokenizer is written once, as ``tokenizer.json``.
        """
        dirpath = Path(dirpath)
        dirpath.mkdir(parents=True, exist_ok=True)
        if self.joint_setting and self.joint_vocab:
            self.src_tokenizer.save(str(dirpath / "tokenizer.json"))
            return
        self.src_tokenizer.save(str(dirpath / "tokenizer.source.json"))
        self.tgt_tokenizer.save(str(dirpath / "tokenizer.target.json"))

    def encode_source(self, texts: list[str]) -> list[list[int]]:
        """Source ids as the model sees them: the tokens followed by ``<eos>`` (as in ``Batch.src``)."""
        return [ids + [EOS_ID] for ids in encode_batch(self.src_tokenizer, list(texts))]

    def source_tensors(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Padded source ids ``(B, S)`` and lengths ``(B,)`` for raw sentences, e.g. read from stdin."""
        return pad_source(encode_batch(self.src_tokenizer, list(texts)), PAD_ID)

    def decode_target(self, ids: Any) -> str:
        """Detokenize target ids (a list or 1-D tensor): stops at ``<eos>``, skips ``<pad>``/``<sos>``."""
        return decode(self.tgt_tokenizer, ids)

    # --- data -------------------------------------------------------------------------------------------------

    def _encoded(self) -> EncodedData:
        if self._data is None:
            raise RuntimeError("Seq2SeqDataModule: call setup() before asking for data")
        return self._data

    def dataset(self, split: str) -> Dataset:
        """The encoded split ``train``, ``val`` or ``test`` (after ``setup``); columns as in ``EncodedData``."""
        if split not in self._encoded().splits:
            raise RuntimeError(f"Seq2SeqDataModule: the {split} split was not encoded (splits={list(self.splits)})")
        return self._encoded().splits[split]

    @property
    def dropped(self) -> dict[str, int]:
        """Train pairs dropped, per reason: ``empty`` (on both sides) and ``too_long`` (after ``setup``)."""
        return dict(self._encoded().dropped)

    @property
    def truncated(self) -> dict[str, int]:
        """Per val/test split, the sources truncated to ``max_length`` for decoding (after ``setup``)."""
        return dict(self._encoded().truncated)

    def _rank_and_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _pin_memory(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _dataloader(self, name: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(name)
        if name not in self._lengths:
            # (N,) int64 straight from Arrow: the numpy formatter of `datasets` looks at every value in Python
            lengths = dataset.select_columns(["length"]).with_format("arrow")[:].column("length").to_numpy()
            self._lengths[name] = lengths if lengths.flags.writeable else lengths.copy()  # torch wants it writable
        rank, world = self._rank_and_world()
        sampler = BucketBatchSampler(self._lengths[name], self.batch_size, shuffle, self.seed, world, rank)
        if shuffle and self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)  # Lightning calls set_epoch again every epoch
        if self.num_workers > 0:
            # the workers never tokenize; this only silences the fork warning of `tokenizers`
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # training resumes mid-epoch where it stopped; each loader draws its workers' base seed from its own
        # generator, not the global one, so starting an iteration leaves dropout's random stream alone
        loader = ResumableDataLoader if shuffle else DataLoader
        return loader(
            dataset.select_columns(_BATCH_COLUMNS),
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        """Length-bucketed, shuffled per epoch; every rank gets the same number of batches."""
        return self._dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Sorted by length; each example on exactly one rank."""
        return self._dataloader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Sorted by length; each example on exactly one rank."""
        return self._dataloader("test", shuffle=False)


class FilesDataModule(Seq2SeqDataModule):
    """``data=files``: the user's own files, named by the flat keys ``data.train``, ``data.val``, ``data.test``.

    Each path is a table (``.jsonl``/``.json``/``.csv``/``.tsv`` with ``source_column``/``target_column``) or the
    prefix of two line-aligned text files ``PATH.<source_lang>``/``PATH.<target_lang>`` (see `FileSource`).
    Every other argument is `Seq2SeqDataModule`'s, which rejects unknown names.
    """

    def __init__(
        self,
        train: str,
        source_lang: str,
        target_lang: str,
        val: str | None = None,
        test: str | None = None,
        source_column: str = "source",
        target_column: str = "target",
        **settings: Any,
    ) -> None:
        from seq2seq.data.sources import FileSource

        source = FileSource(train, val, test, source_lang, target_lang, source_column, target_column)
        super().__init__(source, source_lang, target_lang, **settings)
