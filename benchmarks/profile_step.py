"""Time and profile one training step of a model shape, from this checkout or another (before/after comparisons).

A step is what training does per batch: forward, loss (`Seq2Seq.loss`, the fused output layer), backward,
gradient clipping at 1.0, Adam. Batches have Multi30k's length distribution (the de→en train pairs' word counts,
bucketed by our `BucketBatchSampler`, batch 128) with random ids over 8000 source / 6000 target words. Prints
wall and process-CPU seconds per step and target tokens/s, and with ``--profile`` the top ops by self time.

    python benchmarks/profile_step.py --shape joey_feed --threads 1 --profile
    python benchmarks/profile_step.py --shape joey_feed --root /tmp/old   # an older checkout, same batches

Shapes as in ``benchmarks/machine_fraction.py``.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parents[1]
SHAPES = {
    "default": dict(cell="gru", embedding_dim=256, hidden_size=256, dropout=0.2),
    "best_deen": dict(
        cell="gru",
        embedding_dim=512,
        hidden_size=512,
        bidirectional=True,
        decoder_hidden_size=512,
        dropout=0.4,
        label_smoothing=0.1,
        tie_embeddings="decoder",
        attention={"kind": "bahdanau"},
    ),
    "joey_feed": dict(
        cell="gru",
        embedding_dim=256,
        hidden_size=256,
        bidirectional=True,
        decoder_hidden_size=256,
        dropout=0.2,
        attention={"kind": "luong", "score": "concat", "input_feeding": True},
    ),
}
NOFEED = {"kind": "luong", "score": "concat", "input_feeding": False}
SHAPES["joey_nofeed"] = dict(SHAPES["joey_feed"], attention=NOFEED)
SRC_VOCAB, TGT_VOCAB, BATCH = 8000, 6000, 128
WORD = re.compile(r"\w+|[^\w\s]")


def batches(count: int, pad_sequences, sampler_class, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """``count`` (src, src_lengths, tgt_in, tgt_out) batches of Multi30k-like lengths, random word ids."""
    sides = []
    for lang in ("de", "en"):
        with gzip.open(HERE / "data" / "multi30k" / f"train.{lang}.gz", "rt", encoding="utf-8") as lines:
            sides.append([len(WORD.findall(line)) for line in lines])
    lengths = [(s + 1, t + 1) for s, t in zip(*sides) if s <= 64 and t <= 64]
    sampler = sampler_class([s + t for s, t in lengths], BATCH, shuffle=True, seed=seed)
    full = [indices for indices in sampler if len(indices) == BATCH]
    generator = torch.Generator().manual_seed(seed)
    out = []
    for indices in full[:count]:
        src = [torch.randint(4, SRC_VOCAB, (lengths[i][0] - 1,), generator=generator).tolist() for i in indices]
        tgt = [torch.randint(4, TGT_VOCAB, (lengths[i][1] - 1,), generator=generator).tolist() for i in indices]
        src_ids, src_lengths = pad_sequences([[*w, 3] for w in src], 0)  # <eos> = 3, <pad> = 0
        tgt_in, _ = pad_sequences([[2, *w] for w in tgt], 0)  # <sos> = 2
        tgt_out, _ = pad_sequences([[*w, 3] for w in tgt], 0)
        out.append((src_ids, src_lengths, tgt_in, tgt_out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="joey_feed")
    parser.add_argument("--root", type=Path, default=HERE, help="the checkout whose src/ is imported")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="also profile the steps (top ops by self time)")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve() / "src"))
    from seq2seq.data.batching import pad_sequences
    from seq2seq.data.samplers import BucketBatchSampler
    from seq2seq.modules import Seq2Seq

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Seq2Seq(SRC_VOCAB, TGT_VOCAB, **SHAPES[args.shape]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(args.steps + 1, pad_sequences, BucketBatchSampler)

    def step(batch: tuple[torch.Tensor, ...]) -> None:
        loss = model.loss(*batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(data[0])  # warm-up
    tokens = sum(int((b[3] != 0).sum()) for b in data[1:])
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in data[1:]:
        step(batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{args.shape} root={args.root} threads={torch.get_num_threads()}: {wall / args.steps:.3f} s/step wall, "
        f"{cpu / args.steps:.3f} s/step CPU, {tokens / wall:,.0f} target tok/s"
    )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in data[1:]:
                step(batch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=32))


if __name__ == "__main__":
    main()
