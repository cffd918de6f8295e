"""Data preparation at scale: a WMT-sized ``data=files`` corpus, cold and warm, with the peak memory it takes.

For each ``--pairs N`` the script writes a corpus outside the repository (``--workdir``, default
``/tmp/data_scale``): ``train.de``/``train.en`` hold the bundled Multi30k train pairs repeated (and cut) to N
lines; ``val`` and ``test`` are Multi30k val and test 2016 as they are. Then it prepares the datamodule twice, each
time in a fresh subprocess, as ``src/train.py data=files`` would:

- **cold**: an empty cache folder: the text is read, the word tokenizers trained, train/val/test encoded and the
  cache written (``prepare_data`` + ``setup``), then the first train batch is drawn;
- **warm**: the same again with the cache in place.

Per run it reports the wall time of the preparation (imports excluded), of its parts (reading the text, training
the tokenizers, the rest: encoding and writing the cache, or loading it), of the first batch, and the peak memory
of the process: ``VmHWM`` (the kernel's peak resident set, which also counts the pages of memory-mapped Arrow
files the process has touched) and the peak of ``RssAnon`` (the process's own memory: Python objects, buffers),
sampled every 0.1 s from ``/proc/<pid>/status``. Memory figures do not depend on the machine's load; times do.

    python benchmarks/data_scale.py --pairs 1000000 5000000
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT / "data" / "multi30k"
SOURCE_LANG, TARGET_LANG = "de", "en"


def read_lines(path: Path) -> list[str]:
    """The lines of a bundled Multi30k file (plain or .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        return file.read().splitlines()


def build_corpus(workdir: Path, pairs: int) -> Path:
    """Write (once) the corpus of ``pairs`` train pairs; return its folder."""
    folder = workdir / f"corpus-{pairs}"
    if (folder / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for lang in (SOURCE_LANG, TARGET_LANG):
        lines = read_lines(MULTI30K / f"train.{lang}.gz")
        block = "".join(line + "\n" for line in lines)
        full, rest = divmod(pairs, len(lines))
        with open(folder / f"train.{lang}", "w", encoding="utf-8") as file:
            for _ in range(full):
                file.write(block)
            file.write("".join(line + "\n" for line in lines[:rest]))
        shutil.copyfile(MULTI30K / f"val.{lang}", folder / f"val.{lang}")
        shutil.copyfile(MULTI30K / f"test_2016_flickr.{lang}", folder / f"test.{lang}")
    (folder / "done").write_text("")
    return folder


def status_kb(pid: int) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    values = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                values[name] = int(value.split()[0])
    return values


def run_child(corpus: Path, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One preparation in a fresh process; its report plus the sampled peak of its anonymous memory."""
    command = [sys.executable, __file__, "--child", str(corpus), "--cache", str(cache), "--tokenizer", args.tokenizer]
    if args.tokenizer_sample is not None:
        command += ["--tokenizer-sample", str(args.tokenizer_sample)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak_anon = peak_file = 0
    while process.poll() is None:
        fields = status_kb(process.pid)
        peak_anon = max(peak_anon, fields.get("RssAnon", 0))
        peak_file = max(peak_file, fields.get("RssFile", 0) + fields.get("RssShmem", 0))
        time.sleep(0.1)
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"error: the preparation of {corpus} failed (exit {process.returncode})")
    report = json.loads(output.strip().splitlines()[-1])
    report["peak_anon_mb"] = max(peak_anon, report["rss_anon_end_kb"]) / 1024
    report["peak_file_mb"] = peak_file / 1024
    return report


def child(corpus: Path, cache: Path, tokenizer: str, tokenizer_sample: int | None) -> None:
    """Prepare the datamodule once, draw one train batch, print a JSON report (the last line of stdout)."""
    import resource

    start = time.perf_counter()
    sys.path.insert(0, str(ROOT / "src"))
    from seq2seq.data import datamodule as datamodule_module
    from seq2seq.data.datamodule import FilesDataModule

    imported = time.perf_counter()
    rss_imported = status_kb(os.getpid()).get("VmRSS", 0)
    timings = {"read": 0.0, "tokenizers": 0.0}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timings[name] += time.perf_counter() - began

        return wrapper

    settings: dict[str, Any] = {"tokenizer": tokenizer, "vocab_size": 10000, "min_freq": 2, "max_length": 100}
    if tokenizer_sample is not None:
        settings["tokenizer_sample"] = tokenizer_sample
    dm = FilesDataModule(
        train=str(corpus / "train"),
        val=str(corpus / "val"),
        test=str(corpus / "test"),
        source_lang=SOURCE_LANG,
        target_lang=TARGET_LANG,
        cache_dir=str(cache),
        batch_size=128,
        seed=42,
        **settings,
    )
    dm.source.load = timed("read", dm.source.load)
    datamodule_module.train_tokenizer = timed("tokenizers", datamodule_module.train_tokenizer)
    began = time.perf_counter()
    dm.prepare_data()
    dm.setup("fit")
    prepared = time.perf_counter()
    batch = next(iter(dm.train_dataloader()))
    first_batch = time.perf_counter()
    fields = status_kb(os.getpid())
    report = {
        "import_s": imported - start,
        "prepare_s": prepared - began,
        "read_s": timings["read"],
        "tokenizers_s": timings["tokenizers"],
        "rest_s": prepared - began - timings["read"] - timings["tokenizers"],
        "first_batch_s": first_batch - prepared,
        "cache_hit": dm.cache_hit,
        "train_pairs": len(dm.dataset("train")),
        "batch_shape": list(batch.src.shape),
        "vm_hwm_kb": fields.get("VmHWM", 0),
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_imported_kb": rss_imported,
        "rss_anon_end_kb": fields.get("RssAnon", 0),
    }
    print(json.dumps(report), flush=True)


def hardware() -> str:
    """CPU model and core count, Python and library versions."""
    cpu = cpu_name()
    import datasets
    import tokenizers

    return (
        f"CPU: {cpu} ({os.cpu_count()} cores) | Python {platform.python_version()} | datasets {datasets.__version__} "
        f"| tokenizers {tokenizers.__version__}"
    )


def row(pairs: int, kind: str, report: dict[str, Any]) -> str:
    """One markdown table row."""
    per_million = report["prepare_s"] / (pairs / 1e6)
    cells = [
        f"{pairs:,}",
        kind,
        f"{report['prepare_s']:.1f}",
        f"{per_million:.1f}",
        f"{report['read_s']:.1f}",
        f"{report['tokenizers_s']:.1f}",
        f"{report['rest_s']:.1f}",
        f"{report['first_batch_s']:.2f}",
        f"{report['vm_hwm_kb'] / 1024**2:.2f}",
        f"{report['peak_anon_mb'] / 1024:.2f}",
        f"{report['rss_imported_kb'] / 1024**2:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| pairs | cache | prepare s | s per 1M | read s | tokenizers s | encode + cache (or load) s | first batch s "
    "| peak RSS GB (VmHWM) | peak anon GB | RSS after imports GB |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[1_000_000], help="train pairs per corpus")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/data_scale"), help="corpora and caches")
    parser.add_argument("--tokenizer", default="word", choices=["word", "bpe", "char"])
    parser.add_argument("--tokenizer-sample", type=int, default=None, help="data.tokenizer_sample (default: as is)")
    parser.add_argument("--keep", action="store_true", help="keep the corpora (they are reused when kept)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child is not None:
        child(args.child, args.cache, args.tokenizer, args.tokenizer_sample)
        return
    if any(pairs < 1 for pairs in args.pairs):
        raise SystemExit("error: --pairs must be positive counts")
    if ROOT in args.workdir.resolve().parents:
        raise SystemExit(f"error: --workdir {args.workdir} is inside the repository: use a folder outside it")
    print(hardware())
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    print(HEADER)
    for pairs in args.pairs:
        corpus = build_corpus(args.workdir, pairs)
        cache = args.workdir / f"cache-{pairs}"
        shutil.rmtree(cache, ignore_errors=True)
        for kind in ("cold", "warm"):
            report = run_child(corpus, cache, args)
            if report["cache_hit"] != (kind == "warm"):
                raise SystemExit(f"error: the {kind} run reported cache_hit={report['cache_hit']}")
            print(row(pairs, kind, report), flush=True)
        shutil.rmtree(cache, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(corpus, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
