"""Load test of serve.py: N concurrent clients on loopback for a bounded time, then requests/s, sentences/s,
latency percentiles, errors and the server's memory before and after.

    python benchmarks/serve_load.py --ckpt PATH [--clients 1 32] [--duration 60] [--inputs FILE] [SERVER_ARG ...]
    python benchmarks/serve_load.py --url http://127.0.0.1:8080/ --pid PID [--clients 1 32] ...

With ``--ckpt`` it starts ``src/serve.py ckpt_path=PATH port=0 SERVER_ARG…`` itself (and stops it at the end);
with ``--url`` it loads a server already running (``--pid`` to read its memory). Each client sends one request
at a time (``--texts`` sentences each, drawn in turn from ``--inputs``, default the bundled Multi30k val German)
and waits for its answer; a run ends after ``--duration`` seconds. Prints one Markdown table row per run.
Standard library and psutil only, so the clients cost little of the CPU they share with the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUTS = ROOT / "data" / "multi30k" / "val.de"


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of ``pid`` and its children, in MiB (None without a pid)."""
    if pid is None:
        return None
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def client(url: str, sentences: list[str], texts: int, start: int, stop_at: float, out: list, lock: threading.Lock):
    """Send requests one after another until ``stop_at``; append (latency s, sentences, ok, error) to ``out``."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    index, results = start, []
    while time.monotonic() < stop_at:
        batch = [sentences[(index + k) % len(sentences)] for k in range(texts)]
        index += texts
        body = json.dumps({"texts": batch} if texts > 1 else {"text": batch[0]})
        began = time.monotonic()
        try:
            connection.request("POST", "/translate", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            payload = answer.read()
            ok = answer.status == 200 and len(json.loads(payload)["translations"]) == texts
            error = None if ok else f"{answer.status}: {payload[:200]!r}"
        except (OSError, http.client.HTTPException, ValueError) as exception:
            ok, error = False, f"{type(exception).__name__}: {exception}"
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        results.append((time.monotonic() - began, texts, ok, error))
    connection.close()
    with lock:
        out.extend(results)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(url: str, pid: int | None, sentences: list[str], clients: int, texts: int, duration: float) -> dict:
    """One load run: ``clients`` concurrent clients for ``duration`` seconds."""
    before = rss_mb(pid)
    out: list = []
    lock = threading.Lock()
    began = time.monotonic()
    stop_at = began + duration
    step = max(1, len(sentences) // clients)
    threads = [
        threading.Thread(target=client, args=(url, sentences, texts, i * step, stop_at, out, lock), daemon=True)
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began  # includes the last requests' tails
    latencies = sorted(latency for latency, _, ok, _ in out if ok)
    errors = [error for *_, ok, error in out if not ok]
    return {
        "clients": clients,
        "texts_per_request": texts,
        "seconds": round(elapsed, 1),
        "requests": len(out),
        "requests_per_s": sum(1 for *_, ok, _ in out if ok) / elapsed,
        "sentences_per_s": sum(n for _, n, ok, _ in out if ok) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "p95_ms": 1000 * percentile(latencies, 95) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 99) if latencies else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rss_before_mb": before,
        "rss_after_mb": rss_mb(pid),
    }


def start_server(ckpt: str, server_args: list[str]) -> tuple[subprocess.Popen, str]:
    """``src/serve.py ckpt_path=ckpt port=0 server_args…``, once it answers /health."""
    cmd = [sys.executable, str(ROOT / "src" / "serve.py"), f"ckpt_path={ckpt}", "port=0", *server_args]
    process = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        found = re.search(r"serving on (http://\S+/)", line)
        if found:
            url = found.group(1)
            break
    else:
        raise SystemExit(f"error: the server did not start (exit {process.wait()})")
    threading.Thread(target=process.stderr.read, daemon=True).start()  # keep its log pipe drained
    parts = urlsplit(url)
    for _ in range(600):
        try:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, url
        except OSError:
            time.sleep(0.5)
    raise SystemExit("error: the server did not answer /health")


def row(result: dict) -> str:
    def number(value, digits=1):
        return "–" if value is None else f"{value:.{digits}f}"

    return (
        f"| {result['clients']} | {result['texts_per_request']} | {result['seconds']} | {result['requests']} | "
        f"{number(result['requests_per_s'])} | {number(result['sentences_per_s'])} | {number(result['p50_ms'], 0)} | "
        f"{number(result['p95_ms'], 0)} | {number(result['p99_ms'], 0)} | {result['errors']} | "
        f"{number(result['rss_before_mb'], 0)} → {number(result['rss_after_mb'], 0)} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--ckpt", help="start src/serve.py with this checkpoint")
    target.add_argument("--url", help="load a running server, e.g. http://127.0.0.1:8080/")
    parser.add_argument("--pid", type=int, help="the running server's process id (to read its memory)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32], help="concurrent clients, one run each")
    parser.add_argument("--duration", type=float, default=60, help="seconds per run")
    parser.add_argument("--texts", type=int, default=1, help="sentences per request")
    parser.add_argument("--inputs", type=Path, default=DEFAULT_INPUTS, help="source sentences, one a line")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before the first measured run")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("server_args", nargs="*", help="serve.py overrides (with --ckpt), e.g. decoding=beam")
    args = parser.parse_args(argv)
    sentences = [line.strip() for line in args.inputs.read_text(encoding="utf-8").splitlines() if line.strip()]
    process = None
    if args.ckpt:
        process, url = start_server(args.ckpt, args.server_args)
        pid = process.pid
    else:
        url, pid = args.url.rstrip("/") + "/", args.pid
    try:
        if args.warmup > 0:
            run(url, pid, sentences, max(args.clients), args.texts, args.warmup)
        print(f"server {url} (pid {pid}), {len(sentences)} input sentences, {os.cpu_count()} CPUs", file=sys.stderr)
        print("| clients | texts/request | s | requests | requests/s | sentences/s | p50 ms | p95 ms | p99 ms | "
              "errors | server RSS MiB before → after |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        results = []
        for clients in args.clients:
            result = run(url, pid, sentences, clients, args.texts, args.duration)
            results.append(result)
            print(row(result), flush=True)
            if result["first_error"]:
                print(f"first error: {result['first_error']}", file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
