"""Run the app with uvicorn on a socket bound before the model loads, and stop gracefully on SIGTERM/Ctrl-C."""

from __future__ import annotations

import signal
import socket
import sys

import uvicorn
from fastapi import FastAPI

from seq2seq.errors import ConfigError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), so a port in use fails in a second, not after
    the model has loaded.

    Raises:
        ConfigError: the address cannot be bound (in use, not this machine's, no permission).
    """
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as error:
        reason = error.strerror or error
        raise ConfigError(f"cannot listen on {host}:{port} ({reason}): pass another port=N or host=H") from None
    sock.set_inheritable(True)
    return sock


def serve(app: FastAPI, sock: socket.socket, graceful_shutdown_s: float = 30, access_log: bool = False) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or Ctrl-C; requests in flight then get their answers (for at most
    ``graceful_shutdown_s`` seconds) before the process exits."""
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, log_level="info", access_log=access_log, timeout_graceful_shutdown=graceful_shutdown_s, lifespan="on"
    )
    print(f"serving on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    # uvicorn handles SIGINT/SIGTERM itself, then raises the signal again under the handlers it found: these,
    # so that a graceful stop ends the process normally (exit 0) instead of by the signal or a KeyboardInterrupt
    previous = {sig: signal.signal(sig, _stopped) for sig in STOP_SIGNALS}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("server stopped", file=sys.stderr, flush=True)


def _stopped(number: int, frame: object) -> None:
    """The signal handler in force once uvicorn has stopped: nothing more to do."""
