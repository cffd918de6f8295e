"""The training benchmark and its textbook baseline: logits, losses, and tiny end-to-end runs (nothing is timed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import training  # noqa: E402
from textbook import TextbookSeq2Seq  # noqa: E402

CPU = torch.device("cpu")
TINY = training.Size(embedding_dim=8, hidden_size=16, num_layers=1, bidirectional=False)
TINY_DEEP = training.Size(embedding_dim=8, hidden_size=16, num_layers=2, bidirectional=True)
VOCAB = {"src_vocab": 30, "tgt_vocab": 20}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: a second thread only waits for the first (and stalls on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_batch() -> training.Batch:
    generator = torch.Generator().manual_seed(0)
    return training.random_batch([5, 2, 4], [4, 6, 2], VOCAB["src_vocab"], VOCAB["tgt_vocab"], generator)


@pytest.mark.parametrize("size", [TINY, TINY_DEEP], ids=["1-layer", "2-layer-bidirectional"])
@pytest.mark.parametrize("attention", [False, True], ids=["none", "bahdanau"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_textbook_logits_and_loss(cell: str, attention: bool, size: training.Size) -> None:
    torch.manual_seed(0)
    model = TextbookSeq2Seq(
        VOCAB["src_vocab"], VOCAB["tgt_vocab"], cell, size.embedding_dim, size.hidden_size, size.num_layers,
        size.bidirectional, dropout=0.1, attention=attention,
    )  # fmt: skip
    batch = tiny_batch()
    for ratio in (1.0, 0.5, 0.0):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in, tf_ratio=ratio)
        assert logits.shape == (3, batch.tgt_in.size(1), VOCAB["tgt_vocab"])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0)
        assert torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_textbook_attention_ignores_padding() -> None:
    torch.manual_seed(0)
    model = TextbookSeq2Seq(30, 20, "gru", 8, 16, attention=True)
    batch = tiny_batch()
    memory, _ = model.encoder(batch.src)  # (B, S, H)
    weights = model.decoder.attention(torch.randn(3, 16), memory, batch.src != 0)  # (B, S)
    assert torch.allclose(weights.sum(1), torch.ones(3))
    assert (weights[batch.src == 0] == 0).all()


def test_textbook_sizes_match_ours() -> None:
    """Same configuration, about the same number of parameters (the textbook's embeddings have no padding row)."""
    for cell in ("gru", "lstm"):
        for attention in ("none", "bahdanau"):
            ours = training.build_ours(cell, attention, TINY_DEEP, training.VARIANTS["tf1"], **VOCAB)
            textbook = training.build_textbook(cell, attention, TINY_DEEP, 1.0, **VOCAB)
            count = [sum(p.numel() for p in t.parameters) for t in (ours, textbook)]
            assert abs(count[0] - count[1]) / count[0] < 0.1, (cell, attention, count)


@pytest.mark.parametrize("variant", ["tf1", "exact", "parallel"])
@pytest.mark.parametrize("attention", ["none", "bahdanau"])
def test_training_steps_give_finite_losses(attention: str, variant: str) -> None:
    batch = tiny_batch()
    for trainee in (
        training.build_ours("lstm", attention, TINY_DEEP, training.VARIANTS[variant], **VOCAB),
        training.build_textbook("lstm", attention, TINY_DEEP, training.VARIANTS[variant].tf_ratio, **VOCAB),
    ):
        logits = trainee.model(batch.src, batch.src_lengths, batch.tgt_in, tf_ratio=trainee.tf_ratio, **trainee.kwargs)
        assert logits.shape == (3, batch.tgt_in.size(1), VOCAB["tgt_vocab"])
        assert torch.isfinite(trainee.step(batch))


def test_multi30k_like_batches() -> None:
    lengths = training.multi30k_lengths()
    assert len(lengths) > 28000
    assert 10 < sum(t for _, t in lengths) / len(lengths) < 16
    batches = training.multi30k_batches(16, 3, **VOCAB, device=CPU)
    assert len(batches) == 3
    for batch in batches:
        assert batch.src.size(0) == 16
        assert (batch.src_lengths == (batch.src != 0).sum(1)).all()
        assert ((batch.tgt_in != 0) == (batch.tgt_out != 0)).all()


def test_grid_and_scaling_run_end_to_end() -> None:
    rows = training.run_grid(
        CPU, ["gru"], ["none", "bahdanau"], ["tiny"], ["tf1", "exact", "parallel"], batch_size=8, steps=1, warmup=0,
        repeats=1, size_table={"tiny": TINY}, log=lambda _: None, **VOCAB,
    )  # fmt: skip
    assert len(rows) == 6 and all(row.ours is not None and row.speedup > 0 for row in rows)
    table = training.format_grid(rows)
    assert "tf 1.0 fused" in table and "tf 1.0 stepped" in table
    assert len(list(training.targets(rows, CPU, None))) == 2

    batch = training.run_batch_scaling(CPU, [64, 128], steps=1, warmup=0, repeats=1, size=TINY, **VOCAB)
    assert [len(job.batches) for _, job in batch] == [2, 1]
    assert "vs batch 64" in training.format_batch_scaling(batch)

    length = training.run_length_scaling(CPU, [10, 20], ["tf1", "textbook"], 4, 1, 0, 1, size=TINY, **VOCAB)
    assert [(name, n) for name, n, _ in length] == [("tf1", 10), ("tf1", 20), ("textbook", 10), ("textbook", 20)]
    assert "textbook tf 1.0" in training.format_length_scaling(length)


def test_epoch_runs_end_to_end(tmp_path: Path) -> None:
    overrides = [
        "data=reverse",
        "data.source.num_train=96",
        "data.source.num_val=8",
        "data.source.num_test=8",
        "data.batch_size=16",
        f"data.cache_dir={tmp_path}/cache",
        "model.embedding_dim=8",
        "model.hidden_size=16",
    ]
    result = training.run_epoch(CPU, overrides, epoch_batches=3, repeats=1)
    assert result.batches == 3 and result.tokens > 0
    assert len(result.bare) == len(result.fit) == len(result.loop) == 1
    assert "Trainer.fit" in training.format_epoch(result)


def test_command_line_defaults() -> None:
    args = training.parse_args([])
    assert args.sizes == ["small"] and args.variants == ["tf1", "exact", "parallel"]
    cuda = training.parse_args(["--device", "cuda"])
    assert cuda.sizes == ["small", "large"] and "bf16" in cuda.variants
    with pytest.raises(SystemExit):
        training.parse_args(["--variants", "bf16"])
