"""The REST app: ``POST /translate``, ``GET /health``, ``GET /info`` and the web page at ``/``.

Every answer is JSON; every refused request gets a 4xx whose body is ``{"error": "one readable message"}``, a
request the server could not answer in time a 504 and a full queue a 503, and the server goes on. Checking a
request's token counts and decoding run in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from seq2seq.errors import ConfigError
from seq2seq.serving.batcher import Batcher, BatchingSettings, Busy
from seq2seq.serving.requests import BadRequest, Limits, TranslateRequest, check_tokens, parse_request

log = logging.getLogger("seq2seq.serving")

STATIC = resources.files("seq2seq.serving") / "static"


class SearchCache:
    """The translator's searches by request settings, built once each (the most recent ``size`` kept)."""

    def __init__(self, translator: Any, size: int = 64) -> None:
        self.translator = translator
        self.size = size
        self.searches: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple) -> Any:
        """The search for ``key`` (``TranslateRequest.settings_key``); None for the translator's default.

        Raises:
            BadRequest: settings the search refuses (e.g. ``nbest`` over ``beam_size``), with its message.
        """
        if not key:
            return None
        if key not in self.searches:
            try:
                self.searches[key] = self.translator.make_search(dict(key))
            except ConfigError as error:
                raise BadRequest(422, str(error).removeprefix("decoding.")) from None
            while len(self.searches) > self.size:
                self.searches.popitem(last=False)
        self.searches.move_to_end(key)
        return self.searches[key]


def translation_json(translation: Any, attention: bool) -> dict[str, Any]:
    """One input's answer: its source tokens and n-best hypotheses (with attention weights when asked)."""
    return {
        "source": translation.source,
        "source_tokens": translation.source_tokens,
        # the source was longer than the model's max source length and cut to it (limits.max_tokens above it)
        "truncated": translation.truncated,
        "hypotheses": [
            {
                "text": hypothesis.text,
                "score": hypothesis.score,
                "tokens": hypothesis.tokens,
                **({"attention": hypothesis.attention} if attention else {}),
            }
            for hypothesis in translation.hypotheses
        ],
    }


def create_app(
    translator: Any, limits: Limits, batching: BatchingSettings, info: dict[str, Any] | None = None
) -> FastAPI:
    """The app serving ``translator`` (a `seq2seq.inference.Translator`) within ``limits``.

    Args:
        translator: turns lines into translations (``translate``, ``make_search``, ``count_tokens``, ``info``).
        limits: what one request may ask for.
        batching: how concurrent requests are batched.
        info: what ``GET /info`` answers (default: ``translator.info()`` with the limits and batching).
    """
    batcher = Batcher(translator.translate, batching)
    searches = SearchCache(translator)
    info = info if info is not None else server_info(translator, limits, batching)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    # no /docs: its page loads scripts from a CDN, and this server works offline (the API is in docs/serving.md)
    app = FastAPI(title="seq2seq-lab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        messages = {404: f"no such page: {request.url.path}", 405: f"{request.method} is not allowed here"}
        message = messages.get(error.status_code, str(error.detail))
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("error answering %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queued_texts": batcher.queued_texts, "batches": batcher.batches}

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        return info

    @app.post("/translate")
    async def translate(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limits.max_body_bytes:
            raise BadRequest(413, f"the request body has {length} bytes; the limit is {limits.max_body_bytes}")
        body = await request.body()
        checked = parse_request(body, limits)
        search = searches.get(checked.settings_key)
        if checked.attention and not translator.has_attention:
            raise BadRequest(422, "this model was trained without attention (attention=none): there is none to show")
        counts = await asyncio.to_thread(lambda: [translator.count_tokens(text) for text in checked.texts])
        check_tokens(checked, counts, limits)
        translations = await _translations(checked, search)
        return {"translations": [translation_json(t, checked.attention) for t in translations]}

    async def _translations(checked: TranslateRequest, search: Any) -> list:
        try:
            return await asyncio.wait_for(
                batcher.submit(checked.texts, checked.settings_key, search, checked.attention), limits.timeout_s
            )
        except Busy as error:
            raise HTTPException(503, f"the server is busy ({error}); retry later", {"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise HTTPException(
                504, f"no translation within the server's time limit of {limits.timeout_s:g} s; try again later "
                "or send fewer or shorter texts"
            ) from None  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def server_info(translator: Any, limits: Limits, batching: BatchingSettings) -> dict[str, Any]:
    """``GET /info``: the translator's `info` and what this server allows."""
    return {**translator.info(), "limits": asdict(limits), "batching": asdict(batching)}
