"""Decoding speed: greedy and beam search, batched, against a per-sentence "textbook" beam search.

Decodes the source side of Multi30k val (``data/multi30k/val.de``, 1014 sentences) with a trained
checkpoint and prints sentences/s for every method and batch size, measured side by side: the
methods run interleaved within each repeat, so a busy machine slows them all alike and the ratios
stay meaningful. Tokenization and padding happen before timing; only decoding is timed.

The baseline is the beam search tutorials show: a Python loop over sentences, each with a Python
loop over its hypotheses, calling ``model.encode`` and ``model.decode_step`` on batch size 1. It
follows the same rules as `BeamSearch` (beam 5, length penalty 0, best by summed log-prob), and the
script checks that their best scores agree before timing anything.

    python benchmarks/decoding.py --ckpt logs/train/runs/<run>/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from machine import cpu_name
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ["PROJECT_ROOT"] = str(ROOT)  # the repository, whatever the shell says (as the entry points)

from seq2seq.build import load_trained, restore_module  # noqa: E402
from seq2seq.checkpoint import checkpoint_tokenizers  # noqa: E402
from seq2seq.data.batching import pad_sequences  # noqa: E402
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, encode_batch, tokenizer_from_str  # noqa: E402
from seq2seq.decoding import BeamSearch, GreedySearch  # noqa: E402
from seq2seq.decoding.hypotheses import max_decode_lengths  # noqa: E402
from seq2seq.modules import Seq2Seq  # noqa: E402

VAL_SOURCE = ROOT / "data" / "multi30k" / "val.de"
BEAM_SIZE = 5
MAX_LENGTH = 50
MAX_LENGTH_RATIO = 2.0

Batch = tuple[torch.Tensor, torch.Tensor]  # src (B, S) padded with PAD_ID, src_lengths (B,)


@dataclass
class Method:
    """One row of the table: how to decode, and on which sentences."""

    name: str
    batch_size: int
    sentences: int
    run: Callable[[], None]


def load_model(path: str, device: torch.device) -> tuple[Seq2Seq, Tokenizer, int]:
    """The checkpoint's `Seq2Seq` (eval mode, on ``device``), source tokenizer and max source length.

    As `Translator` does it.
    """
    checkpoint, trained = load_trained(path)
    module = restore_module(checkpoint, trained).to(device).eval()
    max_source_length = int(trained.data.get("max_length") or 0)
    return module.model, tokenizer_from_str(checkpoint_tokenizers(checkpoint)["source"]), max_source_length


def encode(tokenizer: Tokenizer, lines: list[str], max_source_length: int) -> list[list[int]]:
    """Source ids of each line, truncated to ``max_source_length`` (0 = no limit), with ``<eos>`` appended."""
    return [ids[: max_source_length or None] + [EOS_ID] for ids in encode_batch(tokenizer, lines)]


def make_batches(ids: list[list[int]], batch_size: int, device: torch.device) -> list[Batch]:
    """Sort sentences by length (longest first) and pad them into batches of ``batch_size``."""
    ordered = sorted(ids, key=len, reverse=True)
    batches = []
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        src, lengths = pad_sequences(chunk, PAD_ID)  # (B, S), (B,)
        batches.append((src.to(device), lengths.to(device)))
    return batches


def textbook_beam_search(model: Seq2Seq, src_ids: list[int], beam_size: int = BEAM_SIZE) -> tuple[list[int], float]:
    """Beam search on one sentence, one hypothesis at a time: the best (tokens, summed log-prob).

    Same rules as `BeamSearch` with length penalty 0: each step keeps the ``beam_size`` best
    continuations that do not end; an ``<eos>`` among the ``beam_size`` best candidates finishes
    a hypothesis; decoding stops once the best finished score beats every live one, or at the
    length limit, where only ``<eos>`` may follow.
    """
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)  # (1, S)
    lengths = torch.tensor([len(src_ids)], device=device)
    limit = int(max_decode_lengths(lengths, MAX_LENGTH, MAX_LENGTH_RATIO)[0])
    encoded = model.encode(src, lengths)
    beams: list[tuple[float, list[int], object]] = [(0.0, [SOS_ID], encoded.state)]  # (score, tokens, state)
    finished: list[tuple[float, list[int]]] = []
    for t in range(limit):
        candidates = []
        for score, tokens, state in beams:
            logits, new_state, _ = model.decode_step(torch.tensor([tokens[-1]], device=device), state, encoded)
            log_probs = logits[0].float().log_softmax(-1)  # (V,)
            if t + 1 >= limit:  # at the length limit a hypothesis may only end
                candidates.append((score + float(log_probs[EOS_ID]), tokens + [EOS_ID], new_state))
                continue
            top_scores, top_tokens = log_probs.topk(2 * beam_size)
            for token_score, token in zip(top_scores.tolist(), top_tokens.tolist()):
                candidates.append((score + token_score, tokens + [token], new_state))
        candidates.sort(key=lambda c: c[0], reverse=True)
        beams = []
        for rank, (score, tokens, state) in enumerate(candidates[: 2 * beam_size]):
            if tokens[-1] == EOS_ID:
                if rank < beam_size:
                    finished.append((score, tokens))
            elif len(beams) < beam_size:
                beams.append((score, tokens, state))
        best_finished = max((score for score, _ in finished), default=float("-inf"))
        if not beams or (finished and best_finished >= beams[0][0]):
            break
    score, tokens = max(finished, key=lambda f: f[0])
    return tokens[1:], score


def check_agreement(model: Seq2Seq, ids: list[list[int]], device: torch.device) -> tuple[float, float, float]:
    """On these sentences: share of textbook best scores within 1e-3 of `BeamSearch`'s, of identical outputs,
    and the largest score difference."""
    search = BeamSearch(
        beam_size=BEAM_SIZE, length_penalty=0.0, max_length=MAX_LENGTH, max_length_ratio=MAX_LENGTH_RATIO
    )
    same_score = same_tokens = 0
    worst = 0.0
    for src_ids in ids:
        src, lengths = make_batches([src_ids], 1, device)[0]
        found = search(model, src, lengths, SOS_ID, EOS_ID, PAD_ID)
        batched_tokens = [x for x in found.tokens[0].tolist() if x != PAD_ID]
        tokens, score = textbook_beam_search(model, src_ids)
        difference = abs(score - float(found.scores[0]))
        worst = max(worst, difference)
        same_score += difference <= 1e-3
        same_tokens += tokens == batched_tokens
    return same_score / len(ids), same_tokens / len(ids), worst


def hardware() -> str:
    """CPU model and count, torch version and threads (and the GPU when there is one)."""
    text = f"CPU: {cpu_name()} ({os.cpu_count()} cores) | torch {torch.__version__} | threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        text += f" | GPU: {torch.cuda.get_device_name()}"
    return text


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by src/train.py")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--sentences", type=int, default=None, help="sentences for batch sizes > 1 (default: all)")
    parser.add_argument(
        "--subset", type=int, default=200, help="evenly spaced sentences for batch size 1 and the textbook baseline"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; every method runs once per round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--check", type=int, default=20, help="sentences for the textbook/BeamSearch agreement check")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, tokenizer, max_source_length = load_model(args.ckpt, device)
    lines = [line.rstrip("\n") for line in VAL_SOURCE.read_text(encoding="utf-8").splitlines()]
    ids = encode(tokenizer, lines[: args.sentences] if args.sentences else lines, max_source_length)
    step = max(1, len(ids) // min(args.subset, len(ids)))
    subset = ids[::step][: args.subset]

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    greedy = GreedySearch(max_length=MAX_LENGTH, max_length_ratio=MAX_LENGTH_RATIO)
    beam = BeamSearch(beam_size=BEAM_SIZE, length_penalty=0.0, max_length=MAX_LENGTH, max_length_ratio=MAX_LENGTH_RATIO)

    def batched(search: Callable, batches: list[Batch]) -> Callable[[], None]:
        return lambda: [search(model, src, lengths, SOS_ID, EOS_ID, PAD_ID) for src, lengths in batches]

    methods = []
    for name, search in (("greedy", greedy), (f"beam {BEAM_SIZE}", beam)):
        for size in args.batch_sizes:
            sentences = subset if size == 1 else ids
            methods.append(Method(name, size, len(sentences), batched(search, make_batches(sentences, size, device))))
    methods.append(
        Method(f"textbook beam {BEAM_SIZE}", 1, len(subset), lambda: [textbook_beam_search(model, x) for x in subset])
    )

    command = shlex.join([Path(sys.executable).name, *sys.argv])
    print(f"command: {command}")
    print(hardware())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"data: {VAL_SOURCE.relative_to(ROOT)}, {len(ids)} sentences (mean {statistics.mean(map(len, ids)):.1f} "
        f"source tokens); subset for batch size 1: {len(subset)} (mean {statistics.mean(map(len, subset)):.1f})"
    )
    print(f"decoding: max_length {MAX_LENGTH}, max_length_ratio {MAX_LENGTH_RATIO}, beam length penalty 0")

    times: dict[int, list[float]] = {i: [] for i in range(len(methods))}
    with torch.inference_mode():
        scores, tokens, worst = check_agreement(model, subset[: args.check], device)
        print(
            f"textbook vs BeamSearch on {min(args.check, len(subset))} sentences: best score within 1e-3 "
            f"{scores:.0%}, identical output {tokens:.0%}, largest score difference {worst:.2e}"
        )
        for method in methods:  # warm-up: first calls allocate and pick kernels
            method.run()
        for round_ in range(args.repeats):
            order = list(range(len(methods)))
            if round_ % 2:
                order.reverse()  # alternate the order so no method always runs right after another
            for i in order:
                synchronize()
                start = time.perf_counter()
                methods[i].run()
                synchronize()
                times[i].append(time.perf_counter() - start)

    rates = {i: methods[i].sentences / statistics.median(times[i]) for i in times}
    baseline = rates[len(methods) - 1]
    print(f"\nmedian of {args.repeats} interleaved rounds; speed-up is against the textbook beam search\n")
    print(
        f"| {'method':<16} | {'batch':>5} | {'sentences':>9} | {'median s':>8} | {'min-max s':>11} "
        f"| {'sent/s':>8} | {'speed-up':>8} |"
    )
    print(f"|{'-' * 18}|{'-' * 6}:|{'-' * 10}:|{'-' * 9}:|{'-' * 12}:|{'-' * 9}:|{'-' * 9}:|")
    for i, method in enumerate(methods):
        subset_mark = "*" if method.sentences == len(subset) and len(subset) < len(ids) else ""
        print(
            f"| {method.name:<16} | {method.batch_size:>5} | {str(method.sentences) + subset_mark:>9} | "
            f"{statistics.median(times[i]):>8.2f} | {f'{min(times[i]):.2f}-{max(times[i]):.2f}':>11} "
            f"| {rates[i]:>8.1f} | {rates[i] / baseline:>7.1f}x |"
        )
    if len(subset) < len(ids):
        print(f"* evenly spaced subset of {len(subset)} sentences; rates are per sentence, so they compare")

    largest = max(args.batch_sizes)
    greedy_rate = next(rates[i] for i, m in enumerate(methods) if m.name == "greedy" and m.batch_size == largest)
    beam_rate = next(
        rates[i] for i, m in enumerate(methods) if m.name == f"beam {BEAM_SIZE}" and m.batch_size == largest
    )
    speedup, cost = beam_rate / baseline, greedy_rate / beam_rate
    print(f"\ntargets ({args.device}, batch {largest}):")
    print(
        f"  batched beam {BEAM_SIZE} / textbook beam {BEAM_SIZE}: {speedup:.1f}x (target >= 5x): "
        f"{'met' if speedup >= 5 else 'NOT met'}"
    )
    print(f"  beam {BEAM_SIZE} time / greedy time: {cost:.2f}x (target <= 3x): {'met' if cost <= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
