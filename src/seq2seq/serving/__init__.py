"""Serve a trained model: a REST app with dynamic batching (`create_app`) and the web page it ships (``static/``)."""

from seq2seq.serving.app import create_app, server_info
from seq2seq.serving.batcher import Batcher, BatchingSettings
from seq2seq.serving.requests import BadRequest, Limits, TranslateRequest, parse_request
from seq2seq.serving.server import bind, serve

__all__ = [
    "BadRequest",
    "Batcher",
    "BatchingSettings",
    "Limits",
    "TranslateRequest",
    "bind",
    "create_app",
    "parse_request",
    "serve",
    "server_info",
]
