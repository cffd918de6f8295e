"""Sources of raw text pairs: bundled and local files, one-file datasets, Hugging Face datasets, synthetic tasks
(`ReverseSource`, from `seq2seq.data.synthetic`). The files are parsed by `seq2seq.data.readers`.

Every source has ``load() -> DatasetDict`` with the splits ``train``, ``val`` and ``test``, each with exactly the
string columns ``source`` and ``target`` (whitespace stripped). Problems with the user's data raise
:class:`~seq2seq.errors.DataError` with one line that names the problem and the fix; the config keys named are the
ones of ``conf/data/*.yaml`` (``data.source.<field>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import datasets
from datasets import Dataset, DatasetDict

from seq2seq.data.base import KEY, SPLITS, PairSource, make_splits, pairs_to_dataset
from seq2seq.data.readers import (
    find_parallel_file,
    first_line,
    parallel_file,
    read_chatbot,
    read_parallel,
    read_table,
    read_tatoeba,
    select_pairs,
    table_format,
)
from seq2seq.data.splitting import split_indices
from seq2seq.data.synthetic import ReverseSource
from seq2seq.errors import ConfigError, DataError

# --- line-aligned text files (Moses/fairseq convention) -------------------------------------------------------


@dataclass
class ParallelTextSource(PairSource):
    """Line-aligned text files per split: ``PREFIX.<lang>`` or ``PREFIX.<lang>.gz``, one sentence per line.

    Args:
        train, val, test: path prefixes, e.g. ``data/multi30k/train`` for ``train.de.gz`` and ``train.en.gz``.
        source_lang, target_lang: the file suffixes of the source and target side.
    """

    train: str
    val: str
    test: str
    source_lang: str
    target_lang: str

    def _prefixes(self) -> dict[str, str]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def files(self) -> list[Path]:
        """All existing files of both languages."""
        langs = (self.source_lang, self.target_lang)
        found = (find_parallel_file(prefix, lang) for prefix in self._prefixes().values() for lang in langs)
        return [path for path in found if path is not None]

    def load(self) -> DatasetDict:
        """Read the three splits."""
        splits, origins = {}, {}
        for split, prefix in self._prefixes().items():
            source_path = parallel_file(prefix, self.source_lang, split)
            target_path = parallel_file(prefix, self.target_lang, split)
            splits[split], origins[split] = read_parallel(source_path, target_path), str(source_path)
        return make_splits(splits, origins)


# --- tables: JSON Lines, CSV, TSV ----------------------------------------------------------------------------


@dataclass
class TabularSource(PairSource):
    """One table per split (``.jsonl``/``.json``, ``.csv``, ``.tsv``), read with ``datasets.load_dataset``.

    Args:
        train, val, test: file paths.
        source_column, target_column: the columns holding the pair; other columns are dropped.
    """

    train: str
    val: str
    test: str
    source_column: str = "source"
    target_column: str = "target"

    def files(self) -> list[Path]:
        """The three tables."""
        return [Path(self.train), Path(self.val), Path(self.test)]

    def load(self) -> DatasetDict:
        """Read the three tables."""
        paths = {"train": self.train, "val": self.val, "test": self.test}
        splits = {
            split: read_table(Path(path), self.source_column, self.target_column, split)
            for split, path in paths.items()
        }
        return make_splits(splits, paths)


# --- the data=files entry: tables or text-file prefixes, val/test optional --------------------------------------


@dataclass
class FileSource(PairSource):
    """The user's own files: per split a table (``.jsonl``/``.json``/``.csv``/``.tsv``) or a prefix of two text files.

    A ``val`` or ``test`` of ``None`` is carved out of train: ``HELD_OUT_FRACTION`` (5 %) of the train pairs each,
    at least one, chosen with the fixed ``SPLIT_SEED`` so the held-out pairs do not change with the training seed.

    Args:
        train, val, test: a table file or a text-file prefix (``PREFIX.<source_lang>``/``PREFIX.<target_lang>``,
            optionally ``.gz``); ``val``/``test`` may be ``None``.
        source_lang, target_lang: suffixes of the text files (unused for tables).
        source_column, target_column: columns of the tables (unused for text files).
    """

    HELD_OUT_FRACTION: ClassVar[float] = 0.05
    SPLIT_SEED: ClassVar[int] = 1234

    train: str
    val: str | None = None
    test: str | None = None
    source_lang: str = "src"
    target_lang: str = "tgt"
    source_column: str = "source"
    target_column: str = "target"

    def __post_init__(self) -> None:
        if not self.train:
            raise ConfigError("data.train is not set: give a .jsonl/.json/.csv/.tsv file or a text-file prefix")

    def _paths(self) -> dict[str, str]:
        return {split: path for split, path in (("train", self.train), ("val", self.val), ("test", self.test)) if path}

    def files(self) -> list[Path]:
        """Existing tables and text files of all given splits."""
        found: list[Path] = []
        for path in self._paths().values():
            if Path(path).is_file():
                found.append(Path(path))
            langs = (self.source_lang, self.target_lang)
            found += [p for p in (find_parallel_file(path, lang) for lang in langs) if p is not None]
        return found

    def _read(self, split: str, path: str) -> Dataset:
        if Path(path).is_file() and table_format(Path(path)) is not None:
            return read_table(Path(path), self.source_column, self.target_column, split)
        source_path = find_parallel_file(path, self.source_lang)
        target_path = find_parallel_file(path, self.target_lang)
        if source_path is not None and target_path is not None:
            return read_parallel(source_path, target_path)
        if Path(path).is_file():
            return read_table(Path(path), self.source_column, self.target_column, split)  # unknown-format error
        if source_path is None and target_path is None:
            raise DataError(
                f"{split} data not found: {path} is neither a file nor the prefix of {path}.{self.source_lang} and "
                f"{path}.{self.target_lang}: set data.{split} to a .jsonl/.json/.csv/.tsv file or a text-file prefix"
            )
        found, lang = (source_path, self.target_lang) if target_path is None else (target_path, self.source_lang)
        raise DataError(
            f"{split} file not found: {path}.{lang} (or {path}.{lang}.gz) next to {found}: "
            f"add it, or set data.{split} to another prefix"
        )

    def load(self) -> DatasetDict:
        """Read the given splits and carve the missing ones out of train."""
        paths = self._paths()
        splits = {split: self._read(split, path) for split, path in paths.items()}
        origins = dict(paths)
        missing = [split for split in ("val", "test") if split not in paths]
        if missing:
            train = splits["train"]
            if len(train) == 0:
                raise DataError(f"the train split is empty ({self.train}): give it at least one pair")
            sizes = {split: self.HELD_OUT_FRACTION if split in missing else 0 for split in ("val", "test")}
            indices = split_indices(len(train), sizes["val"], sizes["test"], self.SPLIT_SEED, what=str(self.train))
            splits["train"] = train.select(indices["train"])
            for split in missing:
                splits[split] = train.select(indices[split])
                origins[split] = f"carved from {self.train}"
        return make_splits(splits, origins)


# --- one file, split here with a seed -----------------------------------------------------------------------


@dataclass
class SplitSource(PairSource):
    """One file of pairs split into train/val/test with a fixed seed (shuffled first).

    Pairs that share the grouping text (the English sentence for Tatoeba, the question for the chatbot data) land
    in the same split, so a sentence with two translations never sits in both train and test.

    Args:
        path: the file.
        format: ``"tatoeba"`` (``English<TAB>Korean<TAB>attribution`` lines, languages ``en``/``ko``) or
            ``"chatbot"`` (CSV with the header ``Q,A,label``; source = Q, target = A; the languages are unused).
        source_lang, target_lang: the direction for Tatoeba, ``ko``/``en`` or ``en``/``ko``.
        val_size, test_size: fractions in (0, 1) or pair counts.
        seed: the split seed.
    """

    FORMATS: ClassVar[tuple[str, ...]] = ("tatoeba", "chatbot")
    TATOEBA_FIELDS: ClassVar[dict[str, int]] = {"en": 0, "ko": 1}

    path: str
    format: str
    source_lang: str = "ko"
    target_lang: str = "en"
    val_size: float = 500
    test_size: float = 500
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.format not in self.FORMATS:
            raise ConfigError(f"unknown {KEY}.format {self.format!r}: use one of {', '.join(self.FORMATS)}")
        langs = {self.source_lang, self.target_lang}
        if self.format == "tatoeba" and (langs != set(self.TATOEBA_FIELDS)):
            raise ConfigError(
                f"the Tatoeba file has the languages en and ko, not {self.source_lang}→{self.target_lang}: "
                "set data.source_lang=ko data.target_lang=en (or the reverse)"
            )

    def files(self) -> list[Path]:
        """The one file."""
        return [Path(self.path)]

    def load(self) -> DatasetDict:
        """Read the file and split it."""
        path = Path(self.path)
        if not path.is_file():
            raise DataError(f"data file not found: {path}: set {KEY}.path to the {self.format} file")
        if self.format == "tatoeba":
            fields = self.TATOEBA_FIELDS
            sources, targets, groups = read_tatoeba(path, fields[self.source_lang], fields[self.target_lang])
        else:
            sources, targets, groups = read_chatbot(path)
        if not sources:
            raise DataError(f"the train split is empty ({path} has no pairs): give a file with pairs")
        indices = split_indices(len(sources), self.val_size, self.test_size, self.seed, groups=groups, what=str(path))
        splits = {
            split: pairs_to_dataset([sources[i] for i in chosen], [targets[i] for i in chosen])
            for split, chosen in indices.items()
        }
        return make_splits(splits, {split: str(path) for split in SPLITS})


# --- Hugging Face datasets (hub name or local directory) ------------------------------------------------------


def _is_network_error(error: BaseException) -> bool:
    """Whether ``error`` (or one it was raised from) says the hub could not be reached."""
    words = ("Connect", "Offline", "Timeout", "LocalEntryNotFound")
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionError | TimeoutError):
            return True
        if any(word in cls.__name__ for cls in type(seen).__mro__ for word in words):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _default_hub_splits() -> dict[str, str]:
    return {"train": "train", "val": "validation", "test": "test"}


@dataclass
class HubSource(PairSource):
    """A dataset loaded with ``datasets.load_dataset(name, config, revision=...)``: a hub name or a local directory.

    Args:
        name: a hub dataset id (``wmt/wmt16``) or a local directory (e.g. with ``train.jsonl``, ``validation.jsonl``,
            ``test.jsonl``), which is read without network.
        config: the dataset's configuration (``de-en``), or ``None``.
        source_column, target_column: columns; dotted paths reach into nested dicts (``translation.de``).
        splits: our split name (train/val/test) -> the dataset's split name.
        revision: a hub commit or tag; pin it so the tokenized cache cannot go stale.
    """

    name: str
    config: str | None = None
    source_column: str = "source"
    target_column: str = "target"
    splits: dict[str, str] = field(default_factory=_default_hub_splits)
    revision: str | None = None

    def __post_init__(self) -> None:
        given = {str(ours): str(theirs) for ours, theirs in dict(self.splits).items()}
        unknown = sorted(set(given) - set(SPLITS))
        if unknown:
            raise ConfigError(f"unknown split name(s) {', '.join(unknown)} in {KEY}.splits: use train, val, test")
        self.splits = {**_default_hub_splits(), **given}

    def files(self) -> list[Path]:
        """The files of a local dataset directory (none for a hub dataset: pin ``revision`` instead)."""
        root = Path(self.name)
        return sorted(path for path in root.rglob("*") if path.is_file()) if root.is_dir() else []

    def _load_error(self, error: Exception) -> DataError:
        reason = first_line(error)
        if not Path(self.name).exists() and _is_network_error(error):
            return DataError(
                f"cannot reach the Hugging Face Hub to load dataset {self.name!r} ({reason}): set {KEY}.name to a "
                "local directory with train/validation/test .jsonl files, or use data=files"
            )
        if isinstance(error, FileNotFoundError) or type(error).__name__ == "DatasetNotFoundError":
            return DataError(
                f"dataset {self.name!r} not found on the Hugging Face Hub or as a local directory ({reason}): "
                f"check {KEY}.name"
            )
        return DataError(f"cannot load dataset {self.name!r} (config {self.config!r}): {reason}")

    def load(self) -> DatasetDict:
        """Load the dataset and keep the two columns of the three splits."""
        try:
            loaded = datasets.load_dataset(self.name, self.config, revision=self.revision)
        except Exception as error:  # datasets/huggingface_hub raise many types; classified in _load_error
            raise self._load_error(error) from None
        splits, origins = {}, {}
        for ours, theirs in self.splits.items():
            if theirs not in loaded:
                raise DataError(
                    f"dataset {self.name!r} has no split {theirs!r} (splits found: {', '.join(loaded)}): "
                    f"set {KEY}.splits.{ours}"
                )
            where = f"dataset {self.name!r} split {theirs!r}"
            splits[ours] = select_pairs(loaded[theirs], self.source_column, self.target_column, where)
            origins[ours] = where
        return make_splits(splits, origins)


__all__ = [
    "FileSource",
    "HubSource",
    "PairSource",
    "ParallelTextSource",
    "ReverseSource",
    "SplitSource",
    "TabularSource",
]
