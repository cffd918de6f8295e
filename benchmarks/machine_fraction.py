"""How much of the machine a training step uses: achieved matmul GFLOP/s ÷ the CPU's own fp32 matmul GFLOP/s.

For each model shape, in one run and interleaved (so a busy machine slows both sides alike):

1. **machine rate**: ``torch.mm`` in fp32 on the layer sizes the shape uses (the output layer over a batch's
   target tokens, the input projections over all steps, the per-step recurrent product), all threads; the best
   size's GFLOP/s is the machine's rate (the per-size rates show how far the small products fall below it);
2. **model FLOPs**: the matmul FLOPs (mm, addmm, bmm, including backward) of one training step, counted by
   `torch.utils.flop_counter.FlopCounterMode` on the ops that actually run (padding the loss skips is not
   counted), divided by the step's non-pad target tokens;
3. **achieved rate**: those FLOPs ÷ the wall time of a training step (forward, loss, backward, clip, Adam) on
   Multi30k-like batches (`training.multi30k_batches`: real length distribution, random ids over 8000/6000 words);
4. **where the rest goes**: a `torch.profiler` pass splits the step's time into matmul ops and everything else,
   the three largest non-matmul op groups, and the matmul ops' own rate.

Shapes: ``default`` (conf/model/default.yaml: GRU 256, no attention), ``best_deen``
(conf/experiment/multi30k_best_deen.yaml: bi-GRU 512, Bahdanau, tied decoder embeddings, label smoothing 0.1),
``joey_feed`` / ``joey_nofeed`` (benchmarks/vs_joey.py's model, with and without input feeding).

    python benchmarks/machine_fraction.py                       # all shapes, all threads
    python benchmarks/machine_fraction.py --shapes joey_feed --threads 1 --steps 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from profile_step import SHAPES  # noqa: E402
from training import SRC_VOCAB, TGT_VOCAB, Trainee, multi30k_batches, target_tokens  # noqa: E402

from seq2seq.modules import Seq2Seq  # noqa: E402

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_", "aten::baddbmm", "aten::addbmm")
BATCH = 128


def layer_sizes(model: Seq2Seq, tokens: int, steps: int) -> list[tuple[str, int, int, int]]:
    """(name, m, k, n) of the products a step does: output layer, input projection, recurrent step."""
    decoder = model.decoder
    hidden = decoder.hidden_size
    gates = decoder.rnn.weight_hh_l0.size(0)
    return [
        ("output layer", tokens, decoder.output.in_features, decoder.output.out_features),
        ("input projection", tokens, decoder.rnn.weight_ih_l0.size(1), gates),
        ("recurrent step", tokens // steps, hidden, gates),
    ]


def matmul_rate(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """fp32 ``torch.mm`` GFLOP/s of an (m, k) × (k, n) product, repeated for about ``seconds``."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * m * k * n * count / elapsed / 1e9


def step_flops(trainee: Trainee, batch) -> int:
    """Matmul FLOPs of one training step (forward + backward) as counted on the ops that run."""
    with FlopCounterMode(display=False) as counter:
        trainee.step(batch)
    return counter.get_total_flops()


def profile_split(trainee: Trainee, batches: list) -> tuple[float, dict[str, float]]:
    """Share of profiled op time in matmuls, and the self time (s) of the largest non-matmul op groups."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            trainee.step(batch)
    groups: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        groups[event.key] += event.self_cpu_time_total / 1e6
    total = sum(groups.values())
    matmul = sum(groups.get(name, 0.0) for name in MATMULS)
    others = {k: v for k, v in groups.items() if k not in MATMULS}
    return matmul / total, dict(sorted(others.items(), key=lambda kv: -kv[1])[:3]) | {"_total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="default: all cores")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows = []
    for name in args.shapes:
        torch.manual_seed(0)
        model = Seq2Seq(SRC_VOCAB, TGT_VOCAB, **SHAPES[name])
        trainee = Trainee(model, tf_ratio=1.0)
        batches = multi30k_batches(BATCH, args.steps + 1, SRC_VOCAB, TGT_VOCAB, torch.device("cpu"))
        tokens = target_tokens(batches[1:]) / args.steps  # per step
        mean_steps = int(statistics.mean(b.tgt_in.size(1) for b in batches))
        flops = statistics.mean(step_flops(trainee, batch) for batch in batches[1:])  # the first step warms up
        per_token = flops / tokens
        sizes = layer_sizes(model, int(tokens), mean_steps)
        machine, achieved = [], []
        for _ in range(args.rounds):  # the machine rate and the training step, interleaved
            machine.append({label: matmul_rate(m, k, n) for label, m, k, n in sizes})
            start = time.perf_counter()
            for batch in batches[1:]:
                trainee.step(batch)
            achieved.append(flops * args.steps / (time.perf_counter() - start) / 1e9)
        rates = {label: statistics.median(r[label] for r in machine) for label, *_ in sizes}
        peak, got = max(rates.values()), statistics.median(achieved)
        row = dict(name=name, per_token=per_token, achieved=got, peak=peak, rates=rates, load=os.getloadavg()[0])
        if not args.no_profile:
            row["matmul_share"], row["others"] = profile_split(trainee, batches[1:2])
        rows.append(row)
        print(
            f"{name}: {per_token / 1e6:.1f} MFLOP/token, achieved {got:.1f} GFLOP/s, machine {peak:.1f} GFLOP/s "
            f"({got / peak:.0%}); sizes " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()),
            flush=True,
        )
    print(
        "\n| shape | matmul MFLOP / target token (fwd+bwd) | achieved GFLOP/s | machine GFLOP/s | fraction |"
        " matmul share of op time | largest non-matmul ops (share of op time) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        share, others = row.get("matmul_share"), row.get("others", {})
        total = others.pop("_total", 1.0)
        ops = ", ".join(f"{k.removeprefix('aten::')} {v / total:.0%}" for k, v in others.items())
        share_text = f"{share:.0%}" if share is not None else ""
        print(
            f"| {row['name']} | {row['per_token'] / 1e6:.1f} | {row['achieved']:.1f} | {row['peak']:.1f} | "
            f"**{row['achieved'] / row['peak']:.0%}** | {share_text} | {ops} |"
        )
    print(
        "\nmachine rate per layer size (GFLOP/s): "
        + "; ".join(f"{r['name']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["rates"].items()) for r in rows)
    )


if __name__ == "__main__":
    main()
