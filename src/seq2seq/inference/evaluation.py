"""What `eval.py` decides before it decodes a split: which data (the checkpoint's, or the user's ``data=``), which
split, and the datamodule that encodes it with the checkpoint's tokenizers."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seq2seq.data.datamodule import Seq2SeqDataModule
from seq2seq.errors import ConfigError, DataError

SPLITS = ("val", "test")


def eval_data(user_data: DictConfig, trained: DictConfig) -> tuple[DictConfig, str]:
    """The data config to evaluate on and the split: ``user_data`` (eval.yaml's ``data``, holding ``split`` and, with
    ``data=NAME``, a whole data config) over the checkpoint's ``trained.data``.

    Raises:
        ConfigError: an unknown split.
        DataError: ``data=NAME`` of another language pair than the checkpoint's.
    """
    data = OmegaConf.to_container(user_data, resolve=True)
    split = data.pop("split", "test")
    if split not in SPLITS:
        raise ConfigError(f"unknown data.split {split!r}: use data.split=val or data.split=test")
    if "_target_" not in data:
        return trained.data, split
    pair = (data["source_lang"], data["target_lang"])
    trained_pair = (trained.data.source_lang, trained.data.target_lang)
    if pair != trained_pair:
        raise DataError(
            f"eval data is {pair[0]}→{pair[1]} but the checkpoint translates {trained_pair[0]}→{trained_pair[1]}: "
            f"pass data.source_lang={trained_pair[0]} data.target_lang={trained_pair[1]}"
        )
    return OmegaConf.create(data), split


def eval_datamodule(data: Any, tokenizers: dict[str, str], split: str) -> Seq2SeqDataModule:
    """The datamodule of ``data`` (a data config) with the checkpoint's tokenizers, encoding ``split`` only.

    Val/test are never filtered: every pair of ``split`` is scored, its sources truncated to ``max_length`` as
    in training.
    """
    return instantiate(data, tokenizers=tokenizers, splits=[split])
