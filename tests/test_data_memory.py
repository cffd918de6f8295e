"""The data path streams: no step holds the whole corpus as Python objects (lists of sentences or of ids)."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from seq2seq.data import base, encoding, readers, textio
from seq2seq.data import datamodule as datamodule_module
from seq2seq.data.datamodule import FilesDataModule

WORDS = [f"w{i}" for i in range(300)]


def write_corpus(folder: Path, pairs: int) -> int:
    """``pairs`` pairs of 5-15 random words in ``folder/train.{src,tgt}``; returns the bytes of text written."""
    folder.mkdir(parents=True)
    rng = random.Random(0)
    size = 0
    for side in ("src", "tgt"):
        lines = "".join(" ".join(rng.choices(WORDS, k=rng.randint(5, 15))) + "\n" for _ in range(pairs))
        (folder / f"train.{side}").write_text(lines, encoding="utf-8")
        size += len(lines)
    for split in ("val", "test"):
        for side in ("src", "tgt"):
            (folder / f"{split}.{side}").write_text("w1 w2\nw3 w4\n", encoding="utf-8")
    return size


@pytest.fixture
def small_batches(monkeypatch):
    """Batches far smaller than the corpus, so memory that grows with the corpus stands out from a batch's."""
    # raising: a setting that moves must move here too, else the test would measure the default batches
    monkeypatch.setattr(textio, "BLOCK_SIZE", 1 << 13)
    monkeypatch.setattr(readers, "PAIR_BATCH", 250)
    monkeypatch.setattr(encoding, "BATCH_SIZE", 250)
    monkeypatch.setattr(datamodule_module, "BATCH_SIZE", 250)


def files_datamodule(folder: Path) -> FilesDataModule:
    return FilesDataModule(
        train=str(folder / "train"),
        val=str(folder / "val"),
        test=str(folder / "test"),
        source_lang="src",
        target_lang="tgt",
        cache_dir=str(folder / "cache"),
        vocab_size=1000,
        min_freq=1,
        batch_size=64,
    )


def peak_python_memory(folder: Path, warm: bool) -> tuple[int, FilesDataModule]:
    """The most bytes Python objects took at one time while preparing ``folder`` and drawing a train batch."""
    if warm:
        files_datamodule(folder).prepare_data()  # writes the cache
    dm = files_datamodule(folder)
    scratch = set(base.scratch_folder().iterdir())
    tracemalloc.start()
    try:
        dm.prepare_data()
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert dm.cache_hit is warm and batch.src.size(0) == 64
    assert set(base.scratch_folder().iterdir()) <= scratch  # the raw text's Arrow copy is deleted once encoded
    return peak, dm


@pytest.mark.parametrize("run", ["cold", "warm"])
def test_preparing_a_corpus_never_holds_it_in_python(tmp_path, small_batches, run):
    """Python memory must not grow with the corpus: 4000 more pairs may add a little, never the pairs themselves."""
    small, large = 1000, 5000
    write_corpus(tmp_path / "small", small)
    text_bytes = write_corpus(tmp_path / "large", large) * (large - small) / large
    small_peak, _ = peak_python_memory(tmp_path / "small", run == "warm")
    large_peak, dm = peak_python_memory(tmp_path / "large", run == "warm")
    growth = large_peak - small_peak
    # The extra pairs as Python objects: each sentence a str of about 50 bytes plus its text (ids add more).
    extra_in_python = text_bytes + 2 * (large - small) * 50
    assert growth < extra_in_python / 4, f"{growth / 1e6:.2f} MB more Python objects for {large - small} more pairs"
    # the split stays memory-mapped Arrow, its lengths one array
    assert dm.dataset("train").cache_files and isinstance(dm._lengths["train"], np.ndarray)
