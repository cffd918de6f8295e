"""What a ``POST /translate`` body may hold, checked before any decoding: one readable message per bad request.

A body is a JSON object with ``text`` (a string) or ``texts`` (a list of strings), optional decoding settings
(``decoding``: ``greedy|beam|sample``, ``beam_size``, ``nbest``, ``length_penalty``, ``max_length``,
``temperature``, ``top_k``, ``top_p``) and ``attention`` (a boolean). `parse_request` turns the raw bytes into a
`TranslateRequest` or raises `BadRequest`, whose status and message the app sends back as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

# name → (JSON types accepted, what the message calls them); bool is an int in Python, so it is refused apart
INTEGER = ((int,), "a whole number")
NUMBER = ((int, float), "a number")
SETTINGS = {
    "beam_size": INTEGER,
    "nbest": INTEGER,
    "length_penalty": NUMBER,
    "max_length": INTEGER,
    "temperature": NUMBER,
    "top_k": INTEGER,
    "top_p": NUMBER,
}
DECODINGS = ("greedy", "beam", "sample")
FIELDS = ("text", "texts", "decoding", *SETTINGS, "attention")


class BadRequest(Exception):
    """A request the server refuses: an HTTP status (4xx) and one message saying what is wrong and how to fix it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; the server's operator sets these (``conf/serve.yaml``, ``limits``)."""

    max_texts: int = 32  # texts in one request
    max_chars: int = 1000  # characters in one text
    max_tokens: int = 256  # source tokens in one text (the tokenizer's count)
    max_beam_size: int = 10
    max_nbest: int = 10
    max_length: int = 200  # output tokens
    timeout_s: float = 30.0  # a request still unanswered after this gets a 504

    @property
    def max_body_bytes(self) -> int:
        """The largest body worth reading: every text at its longest (4 bytes a character, escaped) and change."""
        return self.max_texts * (self.max_chars * 12 + 16) + 4096


@dataclass
class TranslateRequest:
    """A checked request: the texts, the decoding settings it asked for (possibly none) and whether it wants
    attention weights."""

    texts: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    attention: bool = False
    single: bool = False  # sent as "text" (not "texts"): messages name it so

    @property
    def settings_key(self) -> tuple:
        """Requests with equal keys can share one decoding batch."""
        return tuple(sorted(self.settings.items()))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; `BadRequest` (400) for bytes that are not UTF-8 or text that is not JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(
            400, f"the request body is not valid UTF-8 (byte {error.start + 1} is {body[error.start : error.end]!r})"
        ) from None
    if not text.strip():
        raise BadRequest(400, 'the request body is empty: send a JSON object such as {"text": "..."}')
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        raise BadRequest(400, f"the request body is not valid JSON: {error}") from None


def parse_request(body: bytes, limits: Limits) -> TranslateRequest:
    """Check a ``POST /translate`` body against ``limits`` (everything but the token count, which needs the
    tokenizer: `check_tokens`).

    Raises:
        BadRequest: 400 for a body that is not JSON, 413 for one over the size limit, 422 for a JSON value the API
            does not take (wrong type, unknown field, empty or over-long text, too many texts, a setting over its
            limit).
    """
    if len(body) > limits.max_body_bytes:
        raise BadRequest(413, f"the request body has {len(body)} bytes; the limit is {limits.max_body_bytes}")
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadRequest(422, f'the request body must be a JSON object such as {{"text": "..."}}, not {_kind(data)}')
    unknown = [name for name in data if name not in FIELDS]
    if unknown:
        raise BadRequest(422, f"unknown field {unknown[0]!r}: the fields are {', '.join(FIELDS)}")
    texts = _texts(data, limits)
    settings = {name: _setting(name, data[name], limits) for name in ("decoding", *SETTINGS) if name in data}
    attention = data.get("attention", False)
    if not isinstance(attention, bool):
        raise BadRequest(422, f"attention must be true or false, not {_kind(attention)}")
    return TranslateRequest(texts, settings, attention, single="text" in data)


def _texts(data: dict[str, Any], limits: Limits) -> list[str]:
    if ("text" in data) == ("texts" in data):
        raise BadRequest(422, 'send either "text" (a string) or "texts" (a list of strings)')
    if "text" in data:
        texts, names = [data["text"]], ["text"]
    else:
        texts = data["texts"]
        if not isinstance(texts, list):
            raise BadRequest(422, f"texts must be a list of strings, not {_kind(texts)}")
        if not texts:
            raise BadRequest(422, "texts is empty: send at least one text")
        if len(texts) > limits.max_texts:
            raise BadRequest(422, f"texts has {len(texts)} texts; the limit is {limits.max_texts} per request")
        names = [f"texts[{i}]" for i in range(len(texts))]
    for name, text in zip(names, texts):
        if not isinstance(text, str):
            raise BadRequest(422, f"{name} must be a string, not {_kind(text)}")
        if not text.strip():
            raise BadRequest(422, f"{name} is empty: send some text to translate")
        if len(text) > limits.max_chars:
            raise BadRequest(422, f"{name} has {len(text)} characters; the limit is {limits.max_chars}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # JSON escapes can spell a lone surrogate, which is no text
            raise BadRequest(422, f"{name} holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    return texts


def check_tokens(request: TranslateRequest, counts: list[int], limits: Limits) -> None:
    """Refuse (422) a text with more source tokens than ``limits.max_tokens``; ``counts`` are the tokenizer's."""
    for i, count in enumerate(counts):
        if count > limits.max_tokens:
            name = "text" if request.single else f"texts[{i}]"
            raise BadRequest(422, f"{name} has {count} tokens; the limit is {limits.max_tokens}")


def _setting(name: str, value: Any, limits: Limits) -> Any:
    if name == "decoding":
        if value not in DECODINGS:
            raise BadRequest(422, f"decoding must be one of {', '.join(DECODINGS)}, not {json.dumps(value)}")
        return value
    types, what = SETTINGS[name]
    if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
        raise BadRequest(422, f"{name} must be {what}, not {_kind(value)}")
    maxima = {"beam_size": limits.max_beam_size, "nbest": limits.max_nbest, "max_length": limits.max_length}
    if name in maxima and value > maxima[name]:
        raise BadRequest(422, f"{name} is {value}; this server's limit is {maxima[name]}")
    return value


def _kind(value: Any) -> str:
    """How a message names a JSON value's type (with the value when short)."""
    names = {bool: "a boolean", str: "a string", list: "a list", dict: "an object", type(None): "null"}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    name = names.get(type(value), type(value).__name__)
    shown = json.dumps(value, ensure_ascii=False)
    return f"{name} ({shown})" if len(shown) <= 30 and not isinstance(value, type(None)) else name
