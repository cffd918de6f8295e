"""Named test sets: the extra test files of a bundled dataset, each a ``data.split`` name of ``eval.py``.

``data.split=val`` and ``data.split=test`` evaluate the data config's own splits. A named set (``test_2017_flickr``…)
evaluates the test stage with the text files ``<data dir>/PREFIX.<source_lang>`` and ``PREFIX.<target_lang>`` in
place of the config's test files, so a checkpoint trained before the set was bundled evaluates on it too. The table
lives here, not in ``conf/data/*.yaml``, because ``eval.py`` uses the data config stored in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seq2seq.errors import ConfigError

# name -> path prefix under the data dir (paths.data_dir); the files are PREFIX.<lang>, one sentence a line
TEST_SETS: dict[str, str] = {
    "test_2016_flickr": "multi30k/test_2016_flickr",  # the config's own test split of data=multi30k
    "test_2017_flickr": "multi30k/test_2017_flickr",
    "test_2017_mscoco": "multi30k/test_2017_mscoco",  # out of domain
    "test_2018_flickr": "multi30k/test_2018_flickr",
}
# the data config's own splits, which eval.py evaluates as they are
STAGES = ("val", "test")
# the sources whose test split is a text-file prefix (ParallelTextSource, FileSource)
TEXT_SOURCES = ("seq2seq.data.sources.ParallelTextSource", "seq2seq.data.sources.FileSource")


def split_names() -> list[str]:
    """Every valid ``data.split`` of ``eval.py``: ``val``, ``test`` and the named test sets."""
    return [*STAGES, *TEST_SETS]


def check_split_name(split: str) -> None:
    """Raise a ConfigError listing the valid names unless ``split`` is one."""
    if split not in split_names():
        raise ConfigError(f"unknown data.split {split!r}: use one of {', '.join(split_names())}")


def select_split(data: Mapping[str, Any], split: str, data_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """The stage (``val`` or ``test``) that evaluates ``split``, and the data config that reads it.

    Args:
        data: a data config (``conf/data/*.yaml``, resolved, or the one stored in a checkpoint).
        split: ``val``, ``test`` or a name of :data:`TEST_SETS`.
        data_dir: the directory the named sets' prefixes are under (``paths.data_dir``).

    Raises:
        ConfigError: an unknown name, or a named set for a data source that reads no text files.
    """
    check_split_name(split)
    data = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else dict(data)
    if split in STAGES:
        return split, data
    prefix = Path(data_dir) / TEST_SETS[split]
    source = dict(data.get("source") or {})
    target = source.get("_target_")
    if target not in TEXT_SOURCES:
        raise ConfigError(
            f"data.split={split} reads the text files {prefix}.<lang>, but the data source {target} has no text "
            "test files to replace: use data.split=val or data.split=test"
        )
    return "test", {**data, "source": {**source, "test": str(prefix)}}


def split_prefix(data: Mapping[str, Any], stage: str) -> str | None:
    """The text-file prefix that ``data`` (as returned by :func:`select_split`) reads ``stage`` from, or ``None``."""
    source = data.get("source") or {}
    return source.get(stage) if source.get("_target_") in TEXT_SOURCES else None
