"""The ONNX Runtime backend: an exported directory (`seq2seq.inference.onnx_export`) as a decoding "step" provider.

`OnnxModel` offers what the searches call on a `Seq2Seq` (``encode``, ``decode_step``, ``has_attention``) and
returns the same `Encoded` and `DecoderState` objects, holding CPU torch tensors that share memory with ONNX
Runtime's numpy outputs; so `GreedySearch`, `BeamSearch` and `SampleSearch` decode it unchanged, and `Ensemble`
takes several. Loading needs neither Lightning nor Hydra, nor the exporter's packages (onnx, onnxscript).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from seq2seq.errors import CheckpointError
from seq2seq.modules.state import DecoderState, Encoded

EXPORT_FORMAT = 1  # what `export_onnx` writes and the newest this code reads: raise on a change old readers miss
CONFIG_FILE = "config.json"


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by `export_onnx` (it holds a ``config.json``)."""
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of an exported directory, its format checked.

    Raises:
        CheckpointError: no such directory or file, or a format this code does not read.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{directory} is not an exported model (no {CONFIG_FILE}): pass a directory written by src/export.py"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable ({error}): export the checkpoint again") from None
    version = config.get("format") if isinstance(config, dict) else None
    if not isinstance(version, int) or not 1 <= version <= EXPORT_FORMAT:
        raise CheckpointError(
            f"{path} has export format {version!r}; this version of the project reads formats 1-{EXPORT_FORMAT}: "
            "export the checkpoint again with this version"
        )
    return config


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """ONNX Runtime settings for a small CPU: ``threads`` intra-op threads (default: torch's, so both backends use
    the same cores), operators run one after another (a step graph is a chain), all graph optimizations, and idle
    worker threads that sleep instead of spinning (between two steps the search runs in Python on these cores)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous CPU numpy view of ``tensor`` (a copy only where it must)."""
    return tensor.detach().cpu().contiguous().numpy()


class OnnxModel(nn.Module):
    """An exported model decoded by ONNX Runtime on the CPU, with the step interface of `Seq2Seq`.

    An `nn.Module` without parameters, so that `seq2seq.decoding.Ensemble` can hold several.

    Args:
        directory: written by `seq2seq.inference.onnx_export.export_onnx` (``src/export.py``).
        threads: intra-op threads; None = ``torch.get_num_threads()``.
    """

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.config = read_config(directory)
        if missing := [key for key in ("graphs", "state", "has_attention") if key not in self.config]:
            raise CheckpointError(
                f"{self.directory / CONFIG_FILE} lacks {', '.join(missing)}: export the checkpoint again"
            )
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        graphs = self.config["graphs"]
        paths = {name: self.directory / file for name, file in graphs.items()}
        if missing := [str(path) for path in paths.values() if not path.is_file()]:
            raise CheckpointError(f"{directory} lacks {', '.join(missing)}: export the checkpoint again")
        self.encoder = ort.InferenceSession(str(paths["encoder"]), options, providers=providers)
        self.step = ort.InferenceSession(str(paths["step"]), options, providers=providers)
        self.state_names: list[str] = list(self.config["state"])
        self.lstm, self.feed = "c" in self.state_names, "feed" in self.state_names
        self.encoder_outputs = [output.name for output in self.encoder.get_outputs()]
        self.step_inputs = [item.name for item in self.step.get_inputs()]
        self.step_outputs = [output.name for output in self.step.get_outputs()]

    @property
    def has_attention(self) -> bool:
        """Whether the decoder attends over the encoder outputs (and decoding can return the weights)."""
        return bool(self.config["has_attention"])

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Encoded:
        """Encode ``src`` (B, S) of lengths ``src_lengths`` (B,): as `Seq2Seq.encode`, on CPU tensors."""
        outputs = self.encoder.run(None, {"src": _array(src), "src_lengths": _array(src_lengths)})
        found = {name: torch.from_numpy(value) for name, value in zip(self.encoder_outputs, outputs)}
        state = self._state([found[name] for name in self.state_names])
        return Encoded(found["memory"], found["src_mask"], state, found.get("keys"))

    def decode_step(
        self, tokens: torch.Tensor, state: DecoderState, encoded: Encoded
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One step: ``tokens`` (B,) → logits (B, V), the new state and the attention weights (B, S) or None."""
        rnn = list(state.rnn) if isinstance(state.rnn, tuple) else [state.rnn]
        values = {"tokens": tokens, **dict(zip(self.state_names, [*rnn, state.feed]))}
        values.update(memory=encoded.memory, src_mask=encoded.src_mask, keys=encoded.keys)
        outputs = self.step.run(None, {name: _array(values[name]) for name in self.step_inputs})
        found = {name: torch.from_numpy(value) for name, value in zip(self.step_outputs, outputs)}
        new_state = self._state([found[f"{name}_out"] for name in self.state_names])
        return found["logits"], new_state, found.get("attention")

    def _state(self, tensors: list[torch.Tensor]) -> DecoderState:
        rnn = (tensors[0], tensors[1]) if self.lstm else tensors[0]
        return DecoderState(rnn, tensors[-1] if self.feed else None)
