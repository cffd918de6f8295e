"""Export a trained `Seq2Seq` to a directory that ONNX Runtime decodes without Lightning or Hydra.

The directory holds the two graphs of `seq2seq.inference.onnx_graphs` (``encoder.onnx``, ``step.onnx``), the
tokenizers (``tokenizer.source.json``, ``tokenizer.target.json``) and ``config.json``: the model's description,
its data and decoding settings and the checkpoint's recorded metrics. `seq2seq.inference.onnx.OnnxModel` runs it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnxscript
import torch

from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, UNK_ID
from seq2seq.decoding import Ensemble
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.inference.onnx import CONFIG_FILE, EXPORT_FORMAT, OnnxModel
from seq2seq.inference.onnx_graphs import (
    OPSET,
    EncoderGraph,
    StepGraph,
    has_keys,
    packed_rnn,
    packed_rnn_onnx,
    state_names,
)
from seq2seq.modules import Seq2Seq
from seq2seq.utils.cli import atomic_open
from seq2seq.utils.run_metrics import recorded_run_metrics

log = logging.getLogger("seq2seq")

ENCODER_FILE, STEP_FILE = "encoder.onnx", "step.onnx"
TOKENIZER_FILES = {"source": "tokenizer.source.json", "target": "tokenizer.target.json"}
MODEL_KEYS = (
    "cell",
    "embedding_dim",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "decoder_hidden_size",
    "decoder_num_layers",
    "bridge",
    "attention",
    "tie_embeddings",
)
DATA_KEYS = ("source_lang", "target_lang", "max_length", "tokenizer", "lowercase", "joint_vocab")
TOLERANCE = 1e-4  # the largest difference between the graphs and the eager model that the export accepts


class ExportError(Seq2SeqError):
    """The exported graphs do not compute what the eager model computes."""


def export_onnx(
    module_or_model: Any,
    tokenizers: Mapping[str, str],
    config: Mapping[str, Any],
    directory: str | Path,
    metrics: Mapping[str, Any] | None = None,
    verify: bool = True,
) -> Path:
    """Write the encoder and one-step decoder graphs, the tokenizers and ``config.json`` into ``directory``.

    Args:
        module_or_model: a `Seq2Seq`, or a module holding one as ``.model`` (`seq2seq.lit_module.Seq2SeqModule`).
        tokenizers: ``{"source": json, "target": json}``.
        config: the resolved run config (plain containers): model, data and decoding settings are recorded.
        directory: where to write (created; files of an earlier export there are replaced).
        metrics: the checkpoint's recorded metrics and their sacreBLEU signatures, stored as they are.
        verify: run both graphs with ONNX Runtime on a padded batch and raise `ExportError` unless they match the
            eager model within `TOLERANCE`.

    Returns:
        The directory.
    """
    model = getattr(module_or_model, "model", module_or_model)
    if isinstance(model, Ensemble):
        raise ConfigError(
            "an ensemble is exported member by member: export each checkpoint to its own directory and decode them "
            "together with ckpt_path=[DIR1,DIR2]"
        )
    if not isinstance(model, Seq2Seq):
        raise ConfigError(f"cannot export a {type(model).__name__}: pass a Seq2Seq or a module holding one")
    training = model.training
    model.eval()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:  # in eval mode throughout: dropout off in the graphs and in the eager model they are checked against
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own deprecation and tracing chatter
            src, lengths = example_batch(model, batch=3, length=7, seed=0)
            _export(EncoderGraph(model), (src, lengths), encoder_axes(), directory / ENCODER_FILE)
            step_inputs = step_example(model, src, lengths)
            _export(StepGraph(model), step_inputs, step_axes(model), directory / STEP_FILE)
        for side, name in TOKENIZER_FILES.items():
            with atomic_open(directory / name) as file:
                file.write(tokenizers[side])
        with atomic_open(directory / CONFIG_FILE) as file:
            json.dump(describe(model, config, metrics), file, indent=2)
            file.write("\n")
        if verify:
            check_parity(model, directory)
    finally:
        model.train(training)
    log.info("exported %s and %s to %s", ENCODER_FILE, STEP_FILE, directory)
    return directory


def _export(graph: torch.nn.Module, args: tuple, axes: tuple, path: Path) -> None:
    names = graph_names(graph)
    program = torch.onnx.export(
        graph,
        args,
        dynamo=True,
        opset_version=OPSET,
        dynamic_shapes=axes,
        input_names=names[0],
        output_names=names[1],
        custom_translation_table={torch.ops.seq2seq.packed_rnn.default: packed_rnn_onnx},
        optimize=True,
        verbose=False,
    )
    program.save(str(path))


def graph_names(graph: torch.nn.Module) -> tuple[list[str], list[str]]:
    """The input and output names of an `EncoderGraph` or `StepGraph`."""
    model = graph.model
    state = state_names(model)
    source = ["memory", "src_mask", *(["keys"] if has_keys(model) else [])]
    if isinstance(graph, EncoderGraph):
        return ["src", "src_lengths"], ["memory", "src_mask", *state, *source[2:]]
    inputs = ["tokens", *state, *(source if model.has_attention else [])]
    outputs = ["logits", *[f"{name}_out" for name in state], *(["attention"] if model.has_attention else [])]
    return inputs, outputs


def example_batch(model: Seq2Seq, batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded random source batch (B, S) with lengths from ``length`` down to 1 (B,)."""
    generator = torch.Generator().manual_seed(seed)
    vocab = model.encoder.embedding.num_embeddings
    lengths = torch.linspace(length, 1, batch).round().long()
    lengths[0] = length
    src = torch.randint(4, max(vocab, 5), (batch, length), generator=generator)
    src = src.masked_fill(torch.arange(length)[None] >= lengths[:, None], model.pad_id)
    return src, lengths


def step_example(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The step graph's example inputs: the encoder's outputs for ``src``, after one token."""
    outputs = EncoderGraph(model)(src, lengths)
    memory, src_mask, rest = outputs[0], outputs[1], outputs[2:]
    num_state = len(state_names(model))
    tokens = torch.full((src.size(0),), SOS_ID, dtype=torch.long)
    source = (memory, src_mask, *rest[num_state:]) if model.has_attention else ()
    return (tokens, *rest[:num_state], *source)


def encoder_axes() -> tuple:
    batch, length = torch.export.Dim("batch"), torch.export.Dim("src_len")
    return ({0: batch, 1: length}, {0: batch})


def step_axes(model: Seq2Seq) -> tuple:
    batch, length = torch.export.Dim("batch"), torch.export.Dim("src_len")
    by_name = {"h": {1: batch}, "c": {1: batch}, "feed": {0: batch}}
    state = [by_name[name] for name in state_names(model)]
    source = [{0: batch, 1: length}] * (3 if has_keys(model) else 2) if model.has_attention else []
    return ({0: batch}, (*state, *source))  # `StepGraph.forward(tokens, *inputs)`


def describe(model: Seq2Seq, config: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config.json``: what the directory holds, the model, its data and decoding settings, recorded metrics."""
    model_config = dict(config.get("model") or {})
    data = dict(config.get("data") or {})
    attention = model_config.get("attention") or {"kind": "none"}
    return {
        "format": EXPORT_FORMAT,
        "graphs": {"encoder": ENCODER_FILE, "step": STEP_FILE},
        "tokenizers": dict(TOKENIZER_FILES),
        "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "sos": SOS_ID, "eos": EOS_ID},
        "state": state_names(model),
        "has_attention": model.has_attention,
        "model": {
            **{key: model_config.get(key) for key in MODEL_KEYS if key in model_config},
            "attention": attention,
            "source_vocab_size": model.encoder.embedding.num_embeddings,
            "target_vocab_size": model.decoder.embedding.num_embeddings,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data": {key: data.get(key) for key in DATA_KEYS if key in data},
        "decoding": dict(config.get("decoding") or {}),
        "metrics": dict(metrics or {}),
        "exported_with": {"torch": torch.__version__, "onnxscript": onnxscript.__version__, "opset": OPSET},
    }


def check_parity(model: Seq2Seq, directory: Path) -> None:
    """Raise `ExportError` unless the exported graphs give the eager model's encoding and first two steps on a
    padded batch of another size than the export's example (dynamic axes, padding, the recurrent state)."""
    onnx_model = OnnxModel(directory)
    src, lengths = example_batch(model, batch=4, length=9, seed=1)
    with torch.no_grad():
        expected, got = model.encode(src, src_lengths=lengths), onnx_model.encode(src, lengths)
        differences = {"memory": (expected.memory - got.memory).abs().max()}
        states = [expected.state, got.state]
        tokens = torch.full((src.size(0),), SOS_ID, dtype=torch.long)
        for step in range(2):
            (expected_logits, states[0], weights), (logits, states[1], attention) = (
                model.decode_step(tokens, states[0], expected),
                onnx_model.decode_step(tokens, states[1], got),
            )
            differences[f"step {step} logits"] = (expected_logits - logits).abs().max()
            if weights is not None:
                differences[f"step {step} attention"] = (weights - attention).abs().max()
            tokens = logits.argmax(-1)
    wrong = {name: float(value) for name, value in differences.items() if not value <= TOLERANCE}
    if wrong:
        raise ExportError(
            f"the exported graphs in {directory} differ from the model by more than {TOLERANCE}: {wrong}; "
            f"check the onnx/onnxscript/onnxruntime versions against pyproject.toml"
        )


def recorded_metrics(checkpoint: Mapping[str, Any], ckpt_path: str | Path | None = None) -> dict[str, Any]:
    """What was recorded of a checkpoint's evaluation: its run's ``metrics.json`` (val/test metrics and their
    sacreBLEU signatures; ``<run>/checkpoints/x.ckpt`` → ``<run>/metrics.json``) where there is one, and the best
    score its checkpoint callback monitored."""
    found = recorded_run_metrics(ckpt_path) if ckpt_path is not None else {}
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, Mapping) and state.get("monitor") and state.get("best_model_score") is not None:
            found["best"] = {state["monitor"]: float(state["best_model_score"])}
    return found


__all__ = ["ExportError", "export_onnx", "packed_rnn", "recorded_metrics"]
