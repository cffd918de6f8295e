"""Reading UTF-8 text files (plain or gzip) with errors that name the file and the line."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from itertools import zip_longest
from pathlib import Path

from seq2seq.errors import DataError

BLOCK_SIZE = 1 << 24  # bytes read at a time by iter_lines


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


def _decode_lines(path: Path, block: bytes, first_line: int, first: bool) -> list[str]:
    """The lines of ``block`` (whole lines), decoded as :func:`read_text` and split as :func:`split_lines`."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + block.count(b"\n", 0, error.start)
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte at line {line}): convert it, e.g. iconv -f <encoding> -t UTF-8"
        ) from None
    return split_lines(text.removeprefix("\ufeff") if first else text)


def iter_lines(path: str | Path, block_size: int | None = None) -> Iterator[list[str]]:
    """The lines of a UTF-8 text file (plain or gzip) in blocks of about ``block_size`` bytes (``BLOCK_SIZE``).

    The same lines and the same errors as :func:`read_lines`, without holding the whole file in memory.
    """
    path = Path(path)
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except OSError as error:
        raise DataError(f"cannot read data file {path}: {error.strerror or error}") from None
    with raw:
        stream = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        pending, line, first = b"", 1, True
        while True:
            try:
                chunk = stream.read(block_size or BLOCK_SIZE)
            except (OSError, EOFError, zlib.error) as error:
                if path.suffix == ".gz":
                    raise DataError(f"{path} is not a valid gzip file ({error}): re-create or decompress it") from None
                raise DataError(f"cannot read data file {path}: {error}") from None
            if not chunk:
                break
            pending += chunk
            end = pending.rfind(b"\n") + 1  # whole lines only: a UTF-8 character never contains the byte \n
            if end:
                block, pending = pending[:end], pending[end:]
                yield _decode_lines(path, block, line, first)
                line, first = line + block.count(b"\n"), False
        if pending:
            yield _decode_lines(path, pending, line, first)


def iter_line_batches(path: str | Path, size: int) -> Iterator[list[str]]:
    """The lines of :func:`iter_lines` in lists of ``size`` (the last one shorter)."""
    buffer: list[str] = []
    for lines in iter_lines(path):
        buffer += lines
        while len(buffer) >= size:
            yield buffer[:size]
            buffer = buffer[size:]
    if buffer:
        yield buffer


def iter_parallel_lines(source_path: Path, target_path: Path, size: int) -> Iterator[tuple[list[str], list[str]]]:
    """Aligned batches of ``size`` lines of two line-aligned files, read side by side.

    Raises:
        DataError: the files have different numbers of lines (both counts named).
    """
    counts = [0, 0]
    pairs = zip_longest(iter_line_batches(source_path, size), iter_line_batches(target_path, size), fillvalue=[])
    for sources, targets in pairs:
        counts[0] += len(sources)
        counts[1] += len(targets)
        if len(sources) != len(targets):
            for rest in pairs:  # count the rest for the message
                counts[0] += len(rest[0])
                counts[1] += len(rest[1])
            raise DataError(
                f"{source_path} has {counts[0]} lines but {target_path} has {counts[1]}: "
                "the two files of a split must be line-aligned"
            )
        yield sources, targets


def file_stats(paths: Iterable[str | Path]) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` per existing file: a cheap fingerprint that changes when a file changes."""
    stats = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            stat = path.stat()
            stats.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return stats
