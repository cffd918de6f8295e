"""What `eval.py` decides before it decodes a split: which data (the checkpoint's, or the user's ``data=``), which
split, and the datamodule that encodes it with the checkpoint's tokenizers."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seq2seq.data.datamodule import Seq2SeqDataModule
from seq2seq.data.test_sets import check_split_name, select_split
from seq2seq.errors import DataError


def eval_data(user_data: DictConfig, trained: DictConfig, data_dir: str) -> tuple[DictConfig, str, str]:
    """The data config to evaluate on, the split's name and the stage that evaluates it (``val`` or ``test``).

    ``user_data`` is eval.yaml's ``data``: it holds ``split`` (``val``, ``test`` or a named test set of
    `seq2seq.data.test_sets`, read from ``data_dir``) and, with ``data=NAME``, a whole data config in place of the
    checkpoint's ``trained.data``.

    Raises:
        ConfigError: an unknown split, or a named set for data without text files.
        DataError: ``data=NAME`` of another language pair than the checkpoint's.
    """
    data = OmegaConf.to_container(user_data, resolve=True)
    split = data.pop("split", "test")
    check_split_name(split)
    if "_target_" in data:
        pair = (data["source_lang"], data["target_lang"])
        trained_pair = (trained.data.source_lang, trained.data.target_lang)
        if pair != trained_pair:
            raise DataError(
                f"eval data is {pair[0]}→{pair[1]} but the checkpoint translates {trained_pair[0]}→{trained_pair[1]}: "
                f"pass data.source_lang={trained_pair[0]} data.target_lang={trained_pair[1]}"
            )
    else:
        data = trained.data
    stage, data = select_split(data, split, data_dir)  # a named set: the test stage over its files
    return OmegaConf.create(data), split, stage


def eval_datamodule(data: Any, tokenizers: dict[str, str], split: str) -> Seq2SeqDataModule:
    """The datamodule of ``data`` (a data config) with the checkpoint's tokenizers, encoding ``split`` only.

    Val/test are never filtered: every pair of ``split`` is scored, its sources truncated to ``max_length`` as
    in training.
    """
    return instantiate(data, tokenizers=tokenizers, splits=[split])
