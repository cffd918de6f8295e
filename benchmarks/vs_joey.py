"""Side by side with Joey NMT 2.3 on the same model: one epoch of Multi30k de→en (or a fixed number of updates).

The model is the peer's (``benchmarks/joey/*.yaml``, copied from ``../shared/peers/joey/``): bidirectional GRU
encoder 256, GRU decoder 256, embeddings 256, attention after the RNN step (Joey's "bahdanau" score = our
``attention=luong attention.score=concat``), bridge, dropout 0.2, batch 128 sentences, Adam 1e-3, clip 1.0; with
input feeding (``feed``) and without (``nofeed``). Each round runs every tool once per shape, the order reversed
every other round; the table shows the median over rounds. Both validate once, after the last update (greedy, val).

* **seconds**: wall time of the whole command (start-up, vocabularies, training, validation);
* **tok/s**: training throughput as each tool logs it (non-pad target tokens including ``</s>`` per second of
  training, validation excluded: Joey's ``Tokens per Sec``, our progress line's ``tok/s``);
* **val BLEU**: after the last update (Joey: its validation report; ours: ``val/bleu``, sacreBLEU 13a).

Joey NMT lives in its own virtual environment (default ``/tmp/joey/bin/python``); without it the benchmark is
skipped with a message. Install:

    python3 -m venv /tmp/joey && /tmp/joey/bin/pip install torch==2.13.0 \\
        && /tmp/joey/bin/pip install joeynmt==2.3.0 importlib_metadata

Run:

    python benchmarks/vs_joey.py                          # one epoch (227 updates), both shapes, 2 rounds
    python benchmarks/vs_joey.py --updates 40 --threads 1 # a fixed number of updates, one thread each
    python benchmarks/vs_joey.py --baseline-root /tmp/old # also an older checkout of ours, in the same rounds
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "benchmarks" / "joey"  # the peer configs, copied from ../shared/peers/joey
SHAPES = {"feed": "rnn_multi30k_deen.yaml", "nofeed": "rnn_multi30k_deen_nofeed.yaml"}
BATCH = 128
EPOCH_UPDATES = 227  # 29,000 pairs / 128
INSTALL = (
    "python3 -m venv /tmp/joey && /tmp/joey/bin/pip install torch==2.13.0 && "
    "/tmp/joey/bin/pip install joeynmt==2.3.0 importlib_metadata"
)
OURS = [
    "model=gru",
    "model.bidirectional=true",
    "model.hidden_size=256",
    "model.embedding_dim=256",
    "model.decoder_hidden_size=256",
    "model.dropout=0.2",
    "attention=luong",
    "attention.score=concat",
    "data.min_freq=1",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "test=false",
]


def joey_available(python: str) -> bool:
    """Whether ``python`` runs and imports joeynmt."""
    if not Path(python).exists():
        return False
    return subprocess.run([python, "-c", "import joeynmt"], capture_output=True).returncode == 0


def prepare_joey(work: Path, data: Path, updates: int | None, val_sentences: int | None) -> dict[str, Path]:
    """Joey's data folder and its two configs, set to validate once after the last update."""
    folder = work / "joey_data"
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        with gzip.open(data / f"train.{lang}.gz", "rb") as src, open(folder / f"train.{lang}", "wb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copy(data / f"val.{lang}", folder / f"val.{lang}")
        shutil.copy(data / f"test_2016_flickr.{lang}", folder / f"test.{lang}")
    configs = {}
    for shape, name in SHAPES.items():
        text = (PEER / name).read_text()
        text = re.sub(r"validation_freq: \d+", f"validation_freq: {updates or EPOCH_UPDATES}", text)
        if val_sentences:
            text = text.replace("sample_dev_subset: -1", f"sample_dev_subset: {val_sentences}")
        if updates:
            text = text.replace("    epochs: 1\n", f"    epochs: 1\n    updates: {updates}\n")
            text = re.sub(r"logging_freq: \d+", f"logging_freq: {max(1, min(10, updates // 2))}", text)
        configs[shape] = work / name
        configs[shape].write_text(text)
    return configs


def run_joey(python: str, work: Path, config: Path) -> dict:
    """One Joey training run: wall seconds, its logged tokens/s (mean over its log lines) and the last val BLEU."""
    model_dir = work / "joey_model"
    shutil.rmtree(model_dir, ignore_errors=True)
    seconds, output = timed([python, "-m", "joeynmt", "train", str(config), "--skip-test"], cwd=work)
    rates = [float(x) for x in re.findall(r"Tokens per Sec:\s*([\d.]+)", output)]
    bleus = re.findall(r"bleu: ([\d.]+)", (model_dir / "validations.txt").read_text())
    return {"seconds": seconds, "tok_s": statistics.mean(rates) if rates else float("nan"), "bleu": float(bleus[-1])}


def run_ours(root: Path, work: Path, shape: str, updates: int | None, val_sentences: int | None) -> dict:
    """One run of ``src/train.py`` from checkout ``root``: wall seconds, the progress line's tok/s and val BLEU."""
    run_dir = work / f"ours-{shape}"
    shutil.rmtree(run_dir, ignore_errors=True)
    args = [*OURS, f"attention.input_feeding={'true' if shape == 'feed' else 'false'}", f"hydra.run.dir={run_dir}"]
    args += [f"paths.log_dir={work}/logs/", f"paths.cache_dir={work}/cache"]
    if updates:
        args.append(f"trainer.limit_train_batches={updates}")
    if val_sentences:
        args.append(f"trainer.limit_val_batches={math.ceil(val_sentences / BATCH)}")
    seconds, output = timed([sys.executable, str(root / "src" / "train.py"), *args], cwd=root)
    lines = [line for line in output.splitlines() if "val bleu" in line and "tok/s" in line]
    if not lines:
        raise RuntimeError(f"no progress line in our output:\n{output[-3000:]}")
    bleu = float(re.search(r"val bleu ([\d.]+)", lines[-1]).group(1))
    rate = float(re.search(r"\| ([\d,]+) tok/s", lines[-1]).group(1).replace(",", ""))
    return {"seconds": seconds, "tok_s": rate, "bleu": bleu}


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Run ``command``; its wall seconds and its output (stdout + stderr); raise on failure."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


@contextlib.contextmanager
def paused(pid_file: str | None):
    """SIGSTOP the process in ``pid_file`` (a background job) for the measurement; SIGCONT it whatever happens."""
    pid = int(Path(pid_file).read_text()) if pid_file and Path(pid_file).exists() else None
    if pid:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--joey-python", default="/tmp/joey/bin/python")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--updates", type=int, default=None, help="updates per run (default: one epoch, 227)")
    parser.add_argument(
        "--val-sentences", type=int, default=None, help="validate on this many val sentences (default: all 1014)"
    )
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every run (default: unset)")
    parser.add_argument("--baseline-root", type=Path, default=None, help="another checkout of ours, run alongside")
    parser.add_argument("--pause-pid-file", default=None, help="pause this process (SIGSTOP) while measuring")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "multi30k")
    args = parser.parse_args()
    if not joey_available(args.joey_python):
        print(f"skipped: Joey NMT is not installed at {args.joey_python} (install: {INSTALL})")
        return
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    tools = {"joey": None, "ours": ROOT}
    if args.baseline_root:
        tools["ours (baseline)"] = args.baseline_root.resolve()
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="vs_joey-") as tmp, paused(args.pause_pid_file) as pid:
        work = Path(tmp)
        configs = prepare_joey(work, args.data, args.updates, args.val_sentences)
        loads = [os.getloadavg()[0]]
        print(f"load average at the start {loads[0]:.2f}; background job paused: {pid or 'none'}", flush=True)
        for r in range(args.rounds):
            order = [(shape, tool) for shape in args.shapes for tool in tools]
            for shape, tool in order if r % 2 == 0 else order[::-1]:
                if tool == "joey":
                    row = run_joey(args.joey_python, work, configs[shape])
                else:
                    row = run_ours(tools[tool], work, shape, args.updates, args.val_sentences)
                loads.append(os.getloadavg()[0])
                results.setdefault((shape, tool), []).append(row)
                print(
                    f"round {r + 1} {shape:6s} {tool:16s} {row['seconds']:7.1f} s {row['tok_s']:8.0f} tok/s "
                    f"BLEU {row['bleu']:5.2f}  load {loads[-1]:.2f}",
                    flush=True,
                )
    span = f"{args.updates} updates" if args.updates else "one epoch (227 updates)"
    span += f", validation on {args.val_sentences or 1014} val sentences"
    print(
        f"\n{span}, median of {args.rounds} rounds; threads {args.threads or 'default'}; "
        f"load average {min(loads):.2f}-{max(loads):.2f} (1 min, sampled after each run)\n"
    )
    print("| shape | tool | seconds | target tok/s | val BLEU | Joey's time ÷ ours |")
    print("|---|---|---:|---:|---:|---:|")
    for shape in args.shapes:
        joey = statistics.median(row["seconds"] for row in results[(shape, "joey")])
        for tool in tools:
            rows = results[(shape, tool)]
            seconds = statistics.median(row["seconds"] for row in rows)
            tok_s = statistics.median(row["tok_s"] for row in rows)
            bleu = statistics.median(row["bleu"] for row in rows)
            ratio = "" if tool == "joey" else f"{joey / seconds:.2f}×"
            print(f"| {shape} | {tool} | {seconds:.1f} | {tok_s:,.0f} | {bleu:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
