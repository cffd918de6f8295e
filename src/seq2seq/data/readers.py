"""Reading pair files: line-aligned text files (``PREFIX.<lang>[.gz]``), tables (JSON Lines, JSON, CSV, TSV) and
the one-file Tatoeba and chatbot datasets.

Each reader returns the ``source``/``target`` string pairs; a problem with the user's file raises
:class:`~seq2seq.errors.DataError` with one line that names the file, the line and the fix. The sources of
`seq2seq.data.sources` read their files with these.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from pathlib import Path

import datasets
from datasets import Dataset, Features, Value

from seq2seq.data.base import KEY, pairs_to_dataset
from seq2seq.data.textio import read_lines, read_text, split_lines
from seq2seq.errors import DataError

# file suffix -> format understood by read_table
TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "tsv"}
FORMAT_NAMES = {"json": "JSON Lines", "csv": "CSV", "tsv": "TSV"}


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception (``datasets`` wraps the parser's error in a generic one)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return error


# --- line-aligned text files (Moses/fairseq convention) -------------------------------------------------------


def find_parallel_file(prefix: str | Path, lang: str) -> Path | None:
    """``PREFIX.<lang>`` or else ``PREFIX.<lang>.gz`` when it exists, else ``None``."""
    for candidate in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if candidate.is_file():
            return candidate
    return None


def _languages_at(prefix: str | Path) -> list[str]:
    """The ``<lang>`` suffixes of the existing files ``PREFIX.<lang>[.gz]``, for hints."""
    prefix = Path(prefix)
    names = glob.glob(glob.escape(str(prefix)) + ".*")
    return sorted({Path(name).name[len(prefix.name) + 1 :].removesuffix(".gz") for name in names})


def parallel_file(prefix: str | Path, lang: str, split: str) -> Path:
    """Resolve ``PREFIX.<lang>[.gz]`` or raise a DataError that names the path and the config key."""
    path = find_parallel_file(prefix, lang)
    if path is not None:
        return path
    found = _languages_at(prefix)
    hint = f" (found languages {', '.join(found)}: set data.source_lang/data.target_lang)" if found else ""
    raise DataError(
        f"{split} file not found: {prefix}.{lang} (or {prefix}.{lang}.gz){hint}: "
        f"set {KEY}.{split} to the path prefix of the {split} files"
    )


def read_parallel(source_path: Path, target_path: Path) -> Dataset:
    """Read two line-aligned UTF-8 files (plain or .gz) into a pair dataset."""
    sources, targets = read_lines(source_path), read_lines(target_path)
    if len(sources) != len(targets):
        raise DataError(
            f"{source_path} has {len(sources)} lines but {target_path} has {len(targets)}: "
            "the two files of a split must be line-aligned"
        )
    return pairs_to_dataset(sources, targets)


# --- tables: JSON Lines, CSV, TSV ----------------------------------------------------------------------------


def table_format(path: Path) -> str | None:
    """``"json"``, ``"csv"`` or ``"tsv"`` from the file suffix, else ``None``."""
    return TABLE_FORMATS.get(path.suffix.lower())


def _csv_dialect(fmt: str) -> dict[str, object]:
    # TSV has no quoting: a sentence may start with a quote character.
    return (
        {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
        if fmt == "tsv"
        else {"delimiter": ",", "quoting": csv.QUOTE_MINIMAL}
    )


def csv_header(path: Path, text: str, fmt: str) -> list[str]:
    """The header of a CSV/TSV text, after checking that every row has as many fields as it.

    The parser would fill a short row with empty strings; a missing field is more likely a missing tab or comma.

    Raises:
        DataError: a row has fewer or more fields than the header (names the file and the line).
    """
    reader = csv.reader(io.StringIO(text, newline=""), **_csv_dialect(fmt))
    header: list[str] | None = None
    start = 1  # the line a row starts on (a quoted field may span lines)
    try:
        for row in reader:
            if not row:
                pass  # a blank line, skipped as the parser does
            elif header is None:
                header = row
            elif len(row) != len(header):
                fields = f"{len(row)} field" + ("s" if len(row) != 1 else "")
                raise DataError(
                    f"cannot parse {path} as {FORMAT_NAMES[fmt]}: line {start} has {fields}, the header has "
                    f"{len(header)}: fix or remove that line"
                )
            start = reader.line_num + 1
    except csv.Error as error:
        raise DataError(f"cannot parse {path} as {FORMAT_NAMES[fmt]}: line {start}: {error}") from None
    return header or []


def json_problem(text: str) -> str | None:
    """Where a JSON Lines (or JSON array) text first goes wrong, e.g. ``line 3: Expecting ':' (column 18)``.

    Returns:
        The line and the reason, or ``None`` when every line is a JSON object (or the text one valid JSON array).
    """
    if text.lstrip().startswith("["):  # a .json file holding one array
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            return f"line {error.lineno}: {error.msg} (column {error.colno})"
        return None
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number}: {error.msg} (column {error.colno})"
        if not isinstance(value, dict):
            return f"line {number} is not a JSON object"
    return None


def _load_csv(path: Path, text: str, fmt: str) -> Dataset:
    header = csv_header(path, text, fmt)
    # Every column as a string: no "NA" -> NaN, no "1" -> int.
    features = Features({name: Value("string") for name in header})
    return datasets.load_dataset(
        "csv",
        data_files=str(path),
        split="train",
        **_csv_dialect(fmt),
        keep_default_na=False,
        na_filter=False,
        features=features,
    )


def select_pairs(table: Dataset, source_column: str, target_column: str, where: str) -> Dataset:
    """Keep two columns of ``table`` (dotted paths such as ``translation.de`` reach into nested dicts).

    Raises:
        DataError: a column is missing (lists the columns found) or a row has no value in one of them.
    """
    table = table.flatten()
    columns = table.column_names
    for column in (source_column, target_column):
        if column not in columns:
            raise DataError(
                f"{where} has no column {column!r} (columns found: {', '.join(columns)}): "
                f"set {KEY}.source_column / {KEY}.target_column"
            )
    rows = table.select_columns(list(dict.fromkeys([source_column, target_column]))).with_format("arrow")[:]
    values = {column: rows.column(column).to_pylist() for column in (source_column, target_column)}
    for column, texts in values.items():
        if None in texts:
            row = texts.index(None) + 1
            raise DataError(f"{where}: column {column!r} has no value in row {row}: fill in or remove that row")
    return pairs_to_dataset(values[source_column], values[target_column])


def read_table(path: Path, source_column: str, target_column: str, split: str) -> Dataset:
    """Read a JSON Lines / JSON / CSV / TSV file with ``datasets.load_dataset`` and keep two columns."""
    if not path.is_file():
        raise DataError(f"{split} file not found: {path}: set {KEY}.{split} to an existing file")
    fmt = table_format(path)
    if fmt is None:
        raise DataError(
            f"unknown file format {path.suffix or '(no suffix)'!r} of {path}: use .jsonl/.json, .csv or .tsv, "
            "or a prefix of two text files PREFIX.<source_lang> and PREFIX.<target_lang>"
        )
    text = read_text(path)  # the UTF-8 check, before any parser sees the bytes
    if not text.strip():
        raise DataError(f"the {split} split is empty ({path}): give it at least one pair")
    try:
        if fmt == "json":
            table = datasets.load_dataset("json", data_files=str(path), split="train")
        else:
            table = _load_csv(path, text, fmt)
    except DataError:
        raise
    except Exception as error:  # the parsers raise many types; all mean a malformed file
        problem = (json_problem(text) if fmt == "json" else None) or first_line(_root_cause(error))
        raise DataError(f"cannot parse {path} as {FORMAT_NAMES[fmt]}: {problem}") from None
    return select_pairs(table, source_column, target_column, str(path))


# --- one-file datasets, split by `seq2seq.data.sources.SplitSource` ---------------------------------------------


def read_tatoeba(path: Path, source_field: int, target_field: int) -> tuple[list[str], list[str], list[str]]:
    """The pairs of a Tatoeba file (``English<TAB>Korean<TAB>attribution`` lines) and each pair's group (its
    English sentence): sources, targets, groups."""
    sources, targets, groups = [], [], []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(
                f"{path} line {number} has no tab: Tatoeba lines are English<TAB>Korean<TAB>attribution; "
                "fix or remove that line"
            )
        sources.append(fields[source_field])
        targets.append(fields[target_field])
        groups.append(fields[0].strip())
    return sources, targets, groups


def read_chatbot(path: Path) -> tuple[list[str], list[str], list[str]]:
    """The pairs of a chatbot CSV (header ``Q,A,label``; source = Q, target = A) and each pair's group (its
    question): sources, targets, groups."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    columns = reader.fieldnames or []
    for column in ("Q", "A"):
        if column not in columns:
            raise DataError(
                f"{path} has no column {column!r} (columns found: {', '.join(columns)}): "
                "the chatbot format needs a CSV with the header Q,A,label"
            )
    rows = list(reader)
    return (
        [row["Q"] or "" for row in rows],
        [row["A"] or "" for row in rows],
        [(row["Q"] or "").strip() for row in rows],
    )
