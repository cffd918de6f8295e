"""Use a trained model: load it (a checkpoint, an ensemble, an exported directory) and turn text into hypotheses
(`Translator`), or evaluate it on a data split (`evaluation`).

The names below are imported on first use (PEP 562), so that `seq2seq.inference.onnx` (the ONNX Runtime backend)
loads and decodes an exported directory without importing the training stack (Lightning, through
`seq2seq.build`) that `translator` needs for checkpoints.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seq2seq.inference.translator import Hypothesis, Translation, Translator, load_translator

__all__ = ["Hypothesis", "Translation", "Translator", "load_translator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("seq2seq.inference.translator"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
