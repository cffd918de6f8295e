"""Decoding speed on the CPU: ONNX Runtime against eager PyTorch, one search implementation for both.

Builds a model of the ``experiment=multi30k_best_deen`` shape (bidirectional GRU encoder 2×512, GRU decoder 512,
Bahdanau attention, embeddings 512 tied to the output layer with a 2048→512 projection, vocabularies 8203/6280 as
the word tokenizers of Multi30k de→en give) with **random weights** (seed 0), exports it with
`seq2seq.inference.onnx_export.export_onnx`, and decodes the same sources with `GreedySearch` and `BeamSearch`
(beam 5) on both backends, at batch 1 and batch 64. Random weights never end a sentence early, so every
sentence runs to its length limit (``min(50, 2 × source length + 5)``) on both backends alike: the rates compare
backends, not a trained model's real speed. ``--shape default`` takes the default model instead (GRU 256, no
attention), whose small steps show the per-operator overhead.

Sources: the lengths of Multi30k val (``data/multi30k/val.de``, whitespace tokens + ``<eos>``, sorted), with random
token ids. The backends run alternately (the order reversed every other round); the table shows the median round.
Each row also splits the time into the model's calls (``encode`` + ``decode_step``) and the rest (the search in
Python/torch, shared by both backends).

    python benchmarks/onnx_speed.py [--subset 40] [--sentences 256] [--repeats 3] [--threads N] [--shape default]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decoding import hardware  # noqa: E402

from seq2seq.data.batching import pad_sequences  # noqa: E402
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID  # noqa: E402
from seq2seq.decoding import BeamSearch, GreedySearch  # noqa: E402
from seq2seq.inference.onnx import OnnxModel  # noqa: E402
from seq2seq.inference.onnx_export import export_onnx  # noqa: E402
from seq2seq.modules import Seq2Seq  # noqa: E402

VAL_SOURCE = ROOT / "data" / "multi30k" / "val.de"
SHAPES = {
    "best_deen": {  # experiment=multi30k_best_deen
        "cell": "gru",
        "embedding_dim": 512,
        "hidden_size": 512,
        "bidirectional": True,
        "decoder_hidden_size": 512,
        "attention": {"kind": "bahdanau"},
        "tie_embeddings": "decoder",
    },
    # the default model (conf/model/default.yaml, attention=none): small steps, where per-operator overhead counts
    "default": {"cell": "gru", "embedding_dim": 256, "hidden_size": 256, "attention": None},
}
VOCAB = (8203, 6280)  # Multi30k de→en word tokenizers (vocab_size 10000, min_freq 2)
MAX_LENGTH, MAX_LENGTH_RATIO = 50, 2.0


class Timed:
    """A step provider that adds up the seconds spent in the wrapped model's ``encode`` and ``decode_step``."""

    def __init__(self, model) -> None:
        self.model, self.seconds = model, 0.0
        self.has_attention = model.has_attention

    def encode(self, src, src_lengths):
        start = time.perf_counter()
        encoded = self.model.encode(src, src_lengths)
        self.seconds += time.perf_counter() - start
        return encoded

    def decode_step(self, tokens, state, encoded):
        start = time.perf_counter()
        found = self.model.decode_step(tokens, state, encoded)
        self.seconds += time.perf_counter() - start
        return found


def sources(count: int | None, seed: int = 0) -> list[list[int]]:
    """Random token ids with the lengths of the first ``count`` Multi30k val sources, sorted by length."""
    lines = VAL_SOURCE.read_text(encoding="utf-8").splitlines()[:count]
    generator = torch.Generator().manual_seed(seed)
    lengths = sorted(len(line.split()) for line in lines)
    return [torch.randint(4, VOCAB[0], (n,), generator=generator).tolist() + [EOS_ID] for n in lengths]


def batches(ids: list[list[int]], size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [pad_sequences(ids[i : i + size], PAD_ID) for i in range(0, len(ids), size)]


def step_costs(backends: dict, batch: int, length: int = 14, steps: int = 20, rounds: int = 7) -> dict[str, float]:
    """Milliseconds per decoder step (median over ``rounds`` alternating blocks of ``steps``) at ``batch`` rows of a
    source of ``length`` tokens: each backend's ``decode_step``, and ONNX Runtime's ``session.run`` alone (the rest
    of the ONNX step is the numpy/torch hand-over and building the state)."""
    src = torch.randint(4, VOCAB[0], (batch, length))
    lengths = torch.full((batch,), length)
    tokens = torch.full((batch,), SOS_ID)
    onnx_model = backends["onnx"]
    encoded = {name: model.encode(src, lengths) for name, model in backends.items()}
    feed = {"tokens": tokens.numpy(), "h": encoded["onnx"].state.rnn.numpy(), "memory": encoded["onnx"].memory.numpy()}
    if onnx_model.has_attention:
        feed.update(src_mask=encoded["onnx"].src_mask.numpy(), keys=encoded["onnx"].keys.numpy())
    else:
        del feed["memory"]
    runs: dict[str, Callable[[], object]] = {
        "eager decode_step": lambda: backends["eager"].decode_step(tokens, encoded["eager"].state, encoded["eager"]),
        "onnx decode_step": lambda: onnx_model.decode_step(tokens, encoded["onnx"].state, encoded["onnx"]),
        "onnx session.run": lambda: onnx_model.step.run(None, feed),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for round_ in range(rounds + 1):
            for name, run in runs.items() if round_ % 2 else reversed(runs.items()):
                start = time.perf_counter()
                for _ in range(steps):
                    run()
                if round_:  # round 0 warms up
                    seconds[name].append((time.perf_counter() - start) / steps * 1000)
    return {name: statistics.median(values) for name, values in seconds.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=40, help="sentences decoded at batch size 1 (evenly spaced)")
    parser.add_argument("--sentences", type=int, default=256, help="first N val sentences, at batch size 64")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="threads of both backends (default: torch's)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="best_deen", help="the model's shape")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = SHAPES[args.shape]
    eager = Seq2Seq(*VOCAB, **shape).eval()
    directory = Path(tempfile.mkdtemp(prefix="onnx_speed_"))
    start = time.perf_counter()
    export_onnx(eager, {"source": "{}", "target": "{}"}, {"model": shape}, directory)
    export_seconds = time.perf_counter() - start
    backends = {"eager": eager, "onnx": OnnxModel(directory, threads=torch.get_num_threads())}

    full = sources(args.sentences)
    step = max(1, len(full) // args.subset)
    subset = full[::step][: args.subset]
    work = {  # name → (search, batches, sentences)
        "greedy b1": (GreedySearch(MAX_LENGTH, MAX_LENGTH_RATIO), batches(subset, 1), len(subset)),
        "greedy b64": (GreedySearch(MAX_LENGTH, MAX_LENGTH_RATIO), batches(full, 64), len(full)),
        "beam5 b1": (BeamSearch(5, 0.0, 1, MAX_LENGTH, MAX_LENGTH_RATIO), batches(subset, 1), len(subset)),
        "beam5 b64": (BeamSearch(5, 0.0, 1, MAX_LENGTH, MAX_LENGTH_RATIO), batches(full, 64), len(full)),
    }

    def run(name: str, backend: str) -> tuple[float, float, list]:
        search, todo, _ = work[name]
        model = Timed(backends[backend])
        outputs = []
        start = time.perf_counter()
        with torch.inference_mode():
            for src, lengths in todo:
                outputs.append(search(model, src, lengths, SOS_ID, EOS_ID, PAD_ID).tokens)
        return time.perf_counter() - start, model.seconds, outputs

    print(f"$ python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}")
    print(hardware() + f" | onnxruntime threads {torch.get_num_threads()} | shape {args.shape}, random weights")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"export: {export_seconds:.1f} s (both graphs, with the parity check)")
    timings: dict[tuple[str, str], list[tuple[float, float]]] = {
        (name, backend): [] for name in work for backend in backends
    }
    agree = {}
    for round_ in range(args.repeats + 1):
        for name in work:
            order = list(backends) if round_ % 2 == 0 else list(reversed(backends))
            results = {backend: run(name, backend) for backend in order}
            if round_ == 0:  # warm-up; check that both backends decode the same tokens
                pairs = zip(results["eager"][2], results["onnx"][2])
                agree[name] = all(torch.equal(a, b) for a, b in pairs)
                continue
            for backend, (total, in_model, _) in results.items():
                timings[(name, backend)].append((total, in_model))
    costs = {batch: step_costs(backends, batch) for batch in (1, 64 * 5)}
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("ms per decoder step (source length 14; median of 7 alternating blocks of 20 steps):\n")
    print("| rows (sentences x beams) | " + " | ".join(costs[1]) + " |")
    print("|---|" + "---|" * len(costs[1]))
    for batch, row in costs.items():
        print(f"| {batch} | " + " | ".join(f"{value:.2f}" for value in row.values()) + " |")
    print()
    header = "| search | batch | sentences | backend | median s | sent/s | in model | speed-up | same tokens |"
    print(header)
    print("|" + "|".join("---" for _ in header.split("|")[1:-1]) + "|")
    row: Callable[[float], str] = "{:.2f}".format
    for name, (_, _, count) in work.items():
        medians = {}
        for backend in backends:
            rounds = sorted(timings[(name, backend)])
            total, in_model = rounds[len(rounds) // 2]
            medians[backend] = (statistics.median(t for t, _ in rounds), in_model / total)
        for backend in backends:
            total, share = medians[backend]
            speedup = medians["eager"][0] / total
            search, batch = name.split(" ")
            print(
                f"| {search} | {batch[1:]} | {count} | {backend} | {row(total)} | {count / total:.1f} | "
                f"{share:.0%} | {speedup:.2f}x | {'yes' if agree[name] else 'NO'} |"
            )


if __name__ == "__main__":
    main()
