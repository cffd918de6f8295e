"""Word-vector files: the word2vec / GloVe / fastText text format (``.gz`` too), read for the words wanted.

``modules.embeddings.load_vectors`` fills an embedding matrix from them; `seq2seq.config_checks` checks a file's
vector size against ``model.embedding_dim`` before any data is read.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch

from seq2seq.errors import ConfigError, DataError


@contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    """``path`` as UTF-8 text, gunzipped when it ends in ``.gz``; a missing or unreadable file is a ConfigError."""
    if not path.is_file():
        raise ConfigError(f"pretrained vector file {path} does not exist: fix model.pretrained_embeddings")
    try:
        with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8") as file:
            yield file
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(
            f"cannot read {path} as a text vector file ({type(error).__name__}: {error}): give the word2vec/GloVe/"
            "fastText text format, plain or .gz (binary .bin files are not read)"
        ) from None


def _header(first_line: str) -> tuple[int, bool]:
    """The vector size a file's first line announces, and whether it is a ``count dim`` header (word2vec, fastText)."""
    fields = first_line.split()
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        return int(fields[1]), True
    return len(fields) - 1, False  # GloVe: the first line is a vector already


def vector_size(path: str | Path) -> int:
    """The size of the vectors in ``path``, read from its first line only."""
    path = Path(path)
    with _open_text(path) as file:
        first = file.readline()
    size, _ = _header(first)
    if size < 1:
        raise DataError(f"{path} does not start with a 'count dim' header or a 'word v1 v2 …' line: check the file")
    return size


def read_vectors(path: str | Path, wanted: set[str]) -> tuple[dict[str, torch.Tensor], int]:
    """The vectors of the ``wanted`` words in ``path`` (the first line of a word wins) and the vector size.

    Each line is ``word v1 … vD`` (trailing spaces are fine; lines of words with spaces in them are skipped, no
    token has one); an optional first line ``count D`` is the word2vec/fastText header.
    """
    path = Path(path)
    vectors: dict[str, torch.Tensor] = {}
    with _open_text(path) as file:
        first = file.readline()
        size, has_header = _header(first)
        if size < 1:
            raise DataError(f"{path} does not start with a 'count dim' header or a 'word v1 v2 …' line: check the file")
        lines = file if has_header else itertools.chain([first], file)
        for number, line in enumerate(lines, start=2 if has_header else 1):
            word, _, rest = line.partition(" ")  # only the wanted words' numbers are parsed: files are large
            if word not in wanted or word in vectors:
                continue
            values = rest.split()
            if len(values) > size:
                continue  # a word with spaces in it ("New York 0.1 …"): no token has one
            try:
                if len(values) < size:
                    raise ValueError
                vectors[word] = torch.tensor([float(value) for value in values])
            except ValueError:
                raise DataError(f"{path} line {number}: the vector of {word!r} is not {size} numbers") from None
    return vectors, size


def check_vector_size(path: str | Path, size: int, embedding_dim: int) -> None:
    """One error line when a vector file's size is not ``model.embedding_dim``."""
    if size != embedding_dim:
        raise ConfigError(
            f"{path} holds {size}-dimensional vectors but model.embedding_dim={embedding_dim}: "
            f"set model.embedding_dim={size} or use {embedding_dim}-dimensional vectors"
        )
