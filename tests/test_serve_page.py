"""The web page at ``/``, in a real headless browser (Debian's chromium driven by Playwright): it translates, draws
the attention heatmap, shows the server's message for a bad input, and logs no console errors.

Needs ``apt-get install chromium`` (``make test`` does it where it runs as root on Debian); skipped without it.
``SCREENSHOT=docs/serving_page.png pytest tests/test_serve_page.py`` saves the page's screenshot for the docs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# no network beyond loopback, no sandbox (containers run as root), no GPU
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the project's dev extra)")
if not Path(CHROMIUM).exists():
    pytest.skip(
        "no chromium to drive: install it with `apt-get install chromium` (as root on Debian; `make test` does)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def server(attention_run):
    # a low token limit, so that an over-long input is quick to type
    with running_server(attention_run / "checkpoints" / "best.ckpt", "limits.max_tokens=12") as (process, url):
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def test_page_translates_and_draws_attention(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server)

    # the model's description from /info
    sync_api.expect(page.locator("#info")).to_contain_text("luong")
    sync_api.expect(page.locator("#model-summary")).to_contain_text("parameters")

    page.select_option("#decoding", "beam")
    page.fill("#beam-size", "4")
    page.fill("#nbest", "3")
    page.fill("#source", "t1 t2 t3 t4")
    page.click("#translate")
    hypotheses = page.locator("#hypotheses li")
    sync_api.expect(hypotheses).to_have_count(3)
    sync_api.expect(hypotheses.first.locator(".text")).to_have_text("t4 t3 t2 t1")
    scores = [float(text) for text in hypotheses.locator(".score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)

    # the heatmap: output tokens (with <eos>) × source tokens (with <eos>), the first output on the last word
    cells = page.locator("#heatmap svg rect.cell")
    sync_api.expect(cells).to_have_count(5 * 5)
    first_row = [float(cells.nth(j).get_attribute("data-weight")) for j in range(5)]
    assert max(range(5), key=first_row.__getitem__) == 3
    # choosing another hypothesis draws its own heatmap
    hypotheses.nth(1).click()
    sync_api.expect(hypotheses.nth(1)).to_have_class(re.compile("chosen"))
    assert page.locator("#heatmap svg rect.cell").count() % 5 == 0
    screenshot = Path(os.environ.get("SCREENSHOT") or tmp_path / "page.png")
    hypotheses.first.click()
    page.screenshot(path=str(ROOT / screenshot if not screenshot.is_absolute() else screenshot), full_page=True)

    # greedy: one hypothesis
    page.select_option("#decoding", "greedy")
    page.click("#translate")
    sync_api.expect(hypotheses).to_have_count(1)
    assert errors == []

    # an over-long input: the server's message, shown on the page
    page.fill("#source", " ".join(["t5"] * 13))
    page.click("#translate")
    sync_api.expect(page.locator("#error")).to_have_text("text has 13 tokens; the limit is 12")
    sync_api.expect(page.locator("#results")).to_be_hidden()
    # Chromium reports the refused request itself ("Failed to load resource … 422"); nothing else may go wrong
    assert [error for error in errors if "status of 422" not in error] == []
    # offline: the page asked this server only
    assert requests and all(url.startswith(server) for url in requests), requests
