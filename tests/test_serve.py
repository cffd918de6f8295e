"""serve.py and the REST app: answers, batching, bad requests, time limits, shutdown, and parity with translate.py."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import ROOT, running_server, translate
from fastapi.testclient import TestClient

from seq2seq.inference import Hypothesis, Translation, load_translator
from seq2seq.serving import BatchingSettings, Limits, create_app

LIMITS = Limits(max_texts=4, max_chars=60, max_tokens=8, max_beam_size=6, max_nbest=4, max_length=50, timeout_s=30)


@pytest.fixture(scope="module")
def translator(attention_run):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: a second thread only waits for the first
    yield load_translator(str(attention_run / "checkpoints" / "best.ckpt"), device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(translator):
    with TestClient(create_app(translator, LIMITS, BatchingSettings(max_batch_size=8, max_wait_s=0.01))) as client:
        yield client


def post(url: str, body: bytes | dict, timeout: float = 60) -> tuple[int, dict]:
    """POST ``body`` (bytes as they are, a dict as JSON) to ``url``: the status and the JSON answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_translate_answers_nbest_tokens_and_attention(client):
    answer = client.post("/translate", json={"text": "t1 t2 t3", "beam_size": 4, "nbest": 3, "attention": True})
    assert answer.status_code == 200, answer.text
    (translation,) = answer.json()["translations"]
    assert translation["source"] == "t1 t2 t3"
    assert translation["source_tokens"][-1] == "<eos>" and len(translation["source_tokens"]) == 4
    assert translation["truncated"] is False
    hypotheses = translation["hypotheses"]
    assert len(hypotheses) == 3 and hypotheses[0]["text"] == "t3 t2 t1"
    scores = [hypothesis["score"] for hypothesis in hypotheses]
    assert scores == sorted(scores, reverse=True) and len({h["text"] for h in hypotheses}) == 3
    for hypothesis in hypotheses:
        weights = hypothesis["attention"]
        assert len(weights) == len(hypothesis["tokens"]) and all(len(row) == 4 for row in weights)
        assert all(abs(sum(row) - 1) < 1e-4 for row in weights)
    # reversing: the first output token attends most to the last source word
    assert max(range(4), key=lambda j: hypotheses[0]["attention"][0][j]) == 2


def test_texts_keep_their_order_and_attention_only_when_asked(client):
    answer = client.post("/translate", json={"texts": ["t1 t2 t4", "t5 t6 t7 t8", "t9 t8 t3"]})
    assert answer.status_code == 200, answer.text
    translations = answer.json()["translations"]
    assert [t["hypotheses"][0]["text"] for t in translations] == ["t4 t2 t1", "t8 t7 t6 t5", "t3 t8 t9"]
    assert all("attention" not in h for t in translations for h in t["hypotheses"])


def test_health_and_info(client, translator):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["backend"] == "torch" and info["cell"] == "gru" and info["attention"]["kind"] == "luong"
    assert info["parameters"] == sum(p.numel() for p in translator.model.parameters())
    assert info["source_vocab_size"] > 0 and info["limits"]["max_beam_size"] == 6
    assert "val/bleu" in info["metrics"][0] and "bleu" in info["metrics"][0]["signatures"]


LONG_WORDS = " ".join(["t1"] * 9)  # 9 tokens in 26 characters: over the token limit, not the character limit
BAD_REQUESTS = {
    "malformed JSON": (b'{"text": "t1', 400, "not valid JSON"),
    "empty body": (b"", 400, "body is empty"),
    "not UTF-8": (b'{"text": "t1 \xff\xfe t2"}', 400, "not valid UTF-8 (byte 14"),
    "not an object": (b'["t1"]', 422, "must be a JSON object"),
    "no text": ({"beam_size": 2}, 422, 'either "text"'),
    "text and texts": ({"text": "t1", "texts": ["t2"]}, 422, 'either "text"'),
    "text not a string": ({"text": 5}, 422, "text must be a string, not 5"),
    "texts not a list": ({"texts": "t1"}, 422, "texts must be a list"),
    "text in texts not a string": ({"texts": ["t1", None]}, 422, "texts[1] must be a string, not null"),
    "empty text": ({"text": "  "}, 422, "text is empty"),
    "empty texts": ({"texts": []}, 422, "texts is empty"),
    "too many characters": ({"text": "t1 " * 30}, 422, "text has 90 characters; the limit is 60"),
    "too many tokens": ({"texts": ["t1", LONG_WORDS]}, 422, "texts[1] has 9 tokens; the limit is 8"),
    "too many texts": ({"texts": ["t1"] * 5}, 422, "texts has 5 texts; the limit is 4"),
    "beam over the limit": ({"text": "t1", "beam_size": 7}, 422, "beam_size is 7; this server's limit is 6"),
    "nbest over the beam": ({"text": "t1", "beam_size": 2, "nbest": 3}, 422, "nbest must be between 1"),
    "beam size zero": ({"text": "t1", "beam_size": 0}, 422, "beam_size must be >= 1"),
    "beam size a string": ({"text": "t1", "beam_size": "5"}, 422, "beam_size must be a whole number"),
    "beam size a boolean": ({"text": "t1", "beam_size": True}, 422, "beam_size must be a whole number"),
    "beam size a fraction": ({"text": "t1", "beam_size": 2.5}, 422, "beam_size must be a whole number"),
    "NaN": (b'{"text": "t1", "length_penalty": NaN}', 400, "NaN is not a JSON number"),
    "infinite": (b'{"text": "t1", "length_penalty": 1e999}', 422, "length_penalty must be a number"),
    "unknown field": ({"text": "t1", "beams": 3}, 422, "unknown field 'beams'"),
    "unknown decoding": ({"text": "t1", "decoding": "viterbi"}, 422, "decoding must be one of greedy, beam, sample"),
    "beam setting for sampling": (
        {"text": "t1", "decoding": "sample", "beam_size": 2},
        422,
        "sample decoding takes no",
    ),
    "attention not a boolean": ({"text": "t1", "attention": "yes"}, 422, "attention must be true or false"),
    "lone surrogate": (b'{"text": "t1 \\ud800"}', 422, "lone surrogate"),
}


@pytest.mark.parametrize("body, status, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_gets_4xx_with_one_message(client, body, status, message):
    answer = client.post("/translate", content=body if isinstance(body, bytes) else json.dumps(body))
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"] and message in answer.json()["error"], answer.json()
    assert client.post("/translate", json={"text": "t4 t5"}).json()["translations"][0]["hypotheses"][0]["text"]


def test_unknown_page_and_method(client):
    assert client.get("/nothing").status_code == 404 and client.get("/nothing").json()["error"]
    answer = client.get("/translate")
    assert answer.status_code == 405 and "GET is not allowed" in answer.json()["error"]


def test_an_oversized_body_is_refused_unread(client):
    answer = client.post("/translate", content=b'{"text": "' + b"x" * (LIMITS.max_body_bytes + 1) + b'"}')
    assert answer.status_code == 413 and "the limit is" in answer.json()["error"]


class SlowTranslator:
    """A translator whose decoding waits until ``release`` is set (to hold a batch in flight)."""

    has_attention = False

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()  # a batch is being decoded
        self.batches: list[list[str]] = []

    def translate(self, lines, search=None, attention=False):
        self.entered.set()
        self.release.wait(timeout=30)
        self.batches.append(list(lines))
        return [
            Translation(line, [line, "<eos>"], 1, [Hypothesis(line.upper(), -1.0, [line, "<eos>"])]) for line in lines
        ]

    def make_search(self, settings):
        return dict(settings)

    def count_tokens(self, line):
        return len(line.split())

    def info(self):
        return {"backend": "fake"}


def test_a_request_over_the_time_limit_gets_504_and_the_server_goes_on():
    slow = SlowTranslator()
    limits = Limits(timeout_s=0.5)
    with TestClient(create_app(slow, limits, BatchingSettings(max_wait_s=0))) as client:
        started = time.monotonic()
        answer = client.post("/translate", json={"text": "a b"})
        assert answer.status_code == 504 and "time limit of 0.5 s" in answer.json()["error"]
        assert time.monotonic() - started < 5
        assert client.get("/health").status_code == 200  # the event loop was not blocked by the stuck decoding
        slow.release.set()
        answer = client.post("/translate", json={"text": "c d"})
        assert answer.status_code == 200 and answer.json()["translations"][0]["hypotheses"][0]["text"] == "C D"


def test_a_full_queue_gets_503():
    slow = SlowTranslator()
    app = create_app(slow, Limits(), BatchingSettings(max_wait_s=0, max_queue=2))
    with TestClient(app) as client, ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.post, "/translate", json={"text": "a"})
        assert slow.entered.wait(timeout=30)  # taken into decoding, stuck there
        second = pool.submit(client.post, "/translate", json={"texts": ["b", "c"]})  # waits: the queue is full
        while client.get("/health").json()["queued_texts"] < 2:
            time.sleep(0.01)
        answer = client.post("/translate", json={"text": "d"})
        assert answer.status_code == 503 and "busy" in answer.json()["error"]
        assert answer.headers["retry-after"] == "1"
        slow.release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200


def test_concurrent_requests_are_batched_by_settings():
    slow = SlowTranslator()
    app = create_app(slow, Limits(), BatchingSettings(max_batch_size=8, max_wait_s=0))
    bodies = [{"text": f"w{i}"} for i in range(1, 6)] + [{"text": f"b{i}", "beam_size": 2} for i in range(3)]
    with TestClient(app) as client, ThreadPoolExecutor(len(bodies) + 1) as pool:
        first = pool.submit(client.post, "/translate", json={"text": "w0"})
        assert slow.entered.wait(timeout=30)  # w0 is being decoded: the others queue up meanwhile
        answers = [pool.submit(client.post, "/translate", json=body) for body in bodies]
        while client.get("/health").json()["queued_texts"] < len(bodies):
            time.sleep(0.01)
        slow.release.set()
        texts = [answer.result().json()["translations"][0]["hypotheses"][0]["text"] for answer in [first, *answers]]
    assert texts == ["W0"] + [body["text"].upper() for body in bodies]  # each request gets its own answer
    # one batch per decoding setting, the oldest request's first
    assert [sorted(batch) for batch in slow.batches] == [["w0"], [f"w{i}" for i in range(1, 6)], ["b0", "b1", "b2"]]


BEAM = ["decoding=beam", "decoding.beam_size=4", "decoding.nbest=3"]


@pytest.fixture(scope="module")
def beam_server(attention_run):
    """serve.py with the tiny attention model and beam 4, 3-best by default: (process, base URL)."""
    with running_server(attention_run / "checkpoints" / "best.ckpt", *BEAM) as (process, url):
        yield process, url


def test_server_answers_equal_translate_py(attention_run, beam_server):
    ckpt = attention_run / "checkpoints" / "best.ckpt"
    lines = ["t1 t2 t3", "t5 t6 t7 t8", "zzz qqq", "t4 t4 t9", "t2"]
    expected_default = translate(ckpt, "\n".join(lines) + "\n", *BEAM)
    expected_beam2 = translate(ckpt, "\n".join(lines) + "\n", BEAM[0], "decoding.beam_size=2", "decoding.nbest=2")
    assert expected_default.returncode == 0 and expected_beam2.returncode == 0, expected_default.stderr
    process, url = beam_server
    batches_before = json.loads(urllib.request.urlopen(url + "health").read())["batches"]
    # one request with every line, and each line alone at the same time (batched together by the server)
    status, together = post(url + "translate", {"texts": lines})
    with ThreadPoolExecutor(len(lines)) as pool:
        alone = list(pool.map(lambda line: post(url + "translate", {"text": line}), lines))
    status2, beam2 = post(url + "translate", {"texts": lines, "beam_size": 2, "nbest": 2})
    batches = json.loads(urllib.request.urlopen(url + "health").read())["batches"] - batches_before
    assert status == 200 and status2 == 200 and all(code == 200 for code, _ in alone)
    assert batches < 2 + len(lines)  # the lone requests shared decoding batches

    def lines_of(translations):
        return [f"{h['score']:.4f}\t{h['text']}" for t in translations for h in t["hypotheses"]]

    assert lines_of(together["translations"]) == expected_default.stdout.splitlines()
    assert lines_of([answer["translations"][0] for _, answer in alone]) == expected_default.stdout.splitlines()
    assert lines_of(beam2["translations"]) == expected_beam2.stdout.splitlines()


def test_load_benchmark_reports_every_figure(beam_server):
    process, url = beam_server
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import serve_load

    inputs = [("t1 t2 t3", "t4 t5"), ("t6 t7 t8 t9",)]
    results = [serve_load.run(url, process.pid, list(texts), 3, 1, 1.0) for texts in inputs]
    for result in results:
        assert result["requests"] > 0 and result["errors"] == 0, result["first_error"]
        assert result["sentences_per_s"] > 0 and result["p50_ms"] <= result["p99_ms"]
        assert result["rss_before_mb"] > 50 and result["rss_after_mb"] > 50
    assert serve_load.row(results[0]).count("|") == 12


def test_sigterm_lets_the_request_in_flight_finish(attention_run):
    ckpt = attention_run / "checkpoints" / "best.ckpt"
    # the first request of a batch waits 3 s for company: SIGTERM comes while it waits
    with running_server(ckpt, "batching.max_wait_s=3") as (process, url):
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, url + "translate", {"text": "t1 t2 t3"})
            time.sleep(1)
            process.send_signal(signal.SIGTERM)
            status, answer = pending.result(timeout=60)
        assert process.wait(timeout=60) == 0
    assert status == 200 and answer["translations"][0]["hypotheses"][0]["text"] == "t3 t2 t1"
    log = Path(process.stderr_path).read_text()
    assert "Traceback" not in log and "Shutting down" in log and log.rstrip().endswith("server stopped")


def test_a_port_in_use_fails_at_once_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, str(ROOT / "src" / "serve.py"), f"ckpt_path={tmp_path}/missing.ckpt", f"port={port}"]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}")
