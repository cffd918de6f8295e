"""Reading UTF-8 text files (plain or gzip) with errors that name the file and the line."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path

from seq2seq.errors import DataError


def read_text(path: str | Path) -> str:
    """Return a file's text, gunzipped when its name ends in ``.gz``; a UTF-8 BOM is dropped.

    Raises:
        DataError: the file is missing or unreadable, not valid gzip, or not valid UTF-8 (names the line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except OSError as error:
        raise DataError(f"cannot read data file {path}: {error.strerror or error}") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path} is not a valid gzip file ({error}): re-create or decompress it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte at line {line}): convert it, e.g. iconv -f <encoding> -t UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def split_lines(text: str) -> list[str]:
    """Split on LF (CRLF tolerated); a final newline adds no empty line.

    Only ``\\n`` separates lines: ``str.splitlines`` would also split on U+2028 etc. and misalign parallel files.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_lines(path: str | Path) -> list[str]:
    """Return the lines of a UTF-8 text file (see :func:`read_text` and :func:`split_lines`)."""
    return split_lines(read_text(path))


def file_stats(paths: Iterable[str | Path]) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` per existing file: a cheap fingerprint that changes when a file changes."""
    stats = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            stat = path.stat()
            stats.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return stats
