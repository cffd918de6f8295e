"""Text in, hypotheses out: a trained model (eager, an ensemble, or exported graphs), its tokenizers and a search.

`load_translator` is the one place `translate.py`, the server and the notebook load a trained model for
translation; `Translator.translate` encodes a batch of lines, runs any search's n-best `search` over the model's
step interface (``encode``/``decode_step``), and returns each line's `Translation`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer

from seq2seq.build import checkpoint_paths, load_ensemble, restore_ensemble
from seq2seq.checkpoint import check_same_vocabularies, checkpoint_tokenizers, verify_decoding
from seq2seq.data.batching import pad_source
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, decode, encode_batch, tokenizer_from_str
from seq2seq.decoding import Ensemble
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.inference.onnx import CONFIG_FILE, OnnxModel, is_exported, read_config
from seq2seq.inference.onnx_export import export_onnx
from seq2seq.utils.run_metrics import recorded_run_metrics

BACKENDS = ("torch", "onnx")
SIDES = ("source", "target")
SAME_VOCABULARIES = "an ensemble needs models with the same vocabularies (runs on the same data and tokenizer settings)"

# The searches a request may ask for by name, and the settings each takes (`make_search`).
SEARCHES = {
    "greedy": "seq2seq.decoding.GreedySearch",
    "beam": "seq2seq.decoding.BeamSearch",
    "sample": "seq2seq.decoding.SampleSearch",
}
SEARCH_SETTINGS = {
    "greedy": ("max_length", "max_length_ratio"),
    "beam": (
        "beam_size", "length_penalty", "nbest", "max_length", "max_length_ratio", "min_length", "no_repeat_ngram_size",
    ),
    "sample": ("temperature", "top_k", "top_p", "max_length", "max_length_ratio"),
}  # fmt: skip


@dataclass
class Hypothesis:
    """One output of a search: its text, score (summed log-probability, length-penalized in beam search), its
    tokens up to and including ``<eos>``, and, when asked for, the attention weights (tokens × source tokens)."""

    text: str
    score: float
    tokens: list[str]
    attention: list[list[float]] | None = None


@dataclass
class Translation:
    """One input line: the text, its source tokens as the model saw them (truncated, ``<eos>`` last), how many tokens
    it had before truncation, and its n-best hypotheses, best first."""

    source: str
    source_tokens: list[str]
    source_length: int
    hypotheses: list[Hypothesis] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        """Whether the source was longer than the model's max source length (and cut to it)."""
        return self.source_length > len(self.source_tokens) - 1


class Translator:
    """A step model with its tokenizers and default search, turning batches of lines into `Translation`s.

    Args:
        model: anything with the step interface the searches use: ``encode``, ``decode_step``, ``has_attention``
            (`seq2seq.modules.Seq2Seq`, `seq2seq.decoding.Ensemble`, an ONNX Runtime model).
        source_tokenizer: encodes the input lines.
        target_tokenizer: decodes the hypotheses.
        decoding: the default search's config (``_target_`` and its settings), as plain containers.
        max_source_length: sources are truncated to this many tokens (0: never), as in training.
        device: where the model runs.
        info: what `info` reports about the model beside the decoding (languages, sizes, metrics…).
    """

    def __init__(
        self,
        model: Any,
        source_tokenizer: Tokenizer,
        target_tokenizer: Tokenizer,
        decoding: Mapping[str, Any],
        max_source_length: int = 0,
        device: str | torch.device = "cpu",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.decoding = dict(decoding)
        self.search = instantiate(self.decoding)
        self.max_source_length = max_source_length
        self.device = torch.device(device)
        self._info = dict(info or {})

    @property
    def nbest(self) -> int:
        """Hypotheses per line of the default search."""
        return self.search.nbest

    @property
    def has_attention(self) -> bool:
        """Whether the model attends, so `translate` can return attention weights."""
        return bool(self.model.has_attention)

    def kind(self) -> str:
        """The default search's name: ``greedy``, ``beam`` or ``sample``."""
        return next(name for name, target in SEARCHES.items() if target == self.decoding["_target_"])

    def make_search(self, settings: Mapping[str, Any]) -> Any:
        """A search built from ``settings`` on top of the default one.

        ``settings`` may name the search (``"decoding": "greedy" | "beam" | "sample"``); without a name, a
        ``beam_size`` or ``nbest`` asks for beam search, a ``temperature``/``top_k``/``top_p`` for sampling, and
        anything else keeps the default's kind. The default's own settings carry over where the kind is the same.

        Raises:
            ConfigError: an unknown search or setting, or a value the search refuses (one readable message).
        """
        settings = dict(settings)
        kind = settings.pop("decoding", None)
        if kind is None:
            if {"beam_size", "nbest", "length_penalty"} & settings.keys():
                kind = "beam"
            elif {"temperature", "top_k", "top_p"} & settings.keys():
                kind = "sample"
            else:
                kind = self.kind()
        if kind not in SEARCHES:
            raise ConfigError(f"unknown decoding {kind!r}: use one of {', '.join(SEARCHES)}")
        unknown = sorted(set(settings) - set(SEARCH_SETTINGS[kind]))
        if unknown:
            raise ConfigError(
                f"{kind} decoding takes no {', '.join(unknown)}: its settings are {', '.join(SEARCH_SETTINGS[kind])}"
            )
        base = {k: v for k, v in self.decoding.items() if k in SEARCH_SETTINGS[kind]} if kind == self.kind() else {}
        try:
            return instantiate({"_target_": SEARCHES[kind], **base, **settings})
        except Exception as error:  # Hydra wraps the search's ConfigError
            cause: BaseException | None = error
            while cause is not None and not isinstance(cause, ConfigError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise ConfigError(f"bad {kind} decoding settings {settings}: {error}") from None
            raise cause from None

    def tokenize(self, line: str) -> list[int]:
        """The source ids of ``line``, before truncation (no ``<eos>``)."""
        return encode_batch(self.source_tokenizer, [line])[0]

    def count_tokens(self, line: str) -> int:
        """How many source tokens ``line`` has (before truncation)."""
        return len(self.tokenize(line))

    @torch.no_grad()
    def translate(self, lines: Sequence[str], search: Any = None, attention: bool = False) -> list[Translation]:
        """Translate ``lines`` as one batch with ``search`` (default: the translator's own).

        A blank line gets ``nbest`` empty hypotheses; a source longer than the max source length is truncated
        (`Translation.truncated` tells). With ``attention``, an attentional model's hypotheses carry their weights.
        """
        search = search or self.search
        encoded = encode_batch(self.source_tokenizer, list(lines)) if lines else []
        kept = [ids[: self.max_source_length] if self.max_source_length else ids for ids in encoded]
        results = [
            Translation(line, self._source_tokens(ids), len(full)) for line, ids, full in zip(lines, kept, encoded)
        ]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        for line, result in zip(lines, results):
            if not line.strip():
                result.hypotheses = [Hypothesis("", 0.0, [])] * search.nbest
        if not todo:
            return results
        src, lengths = pad_source([kept[i] for i in todo])  # (B, S), (B,)
        src, lengths = src.to(self.device), lengths.to(self.device)
        found = search.search(self.model, src, lengths, SOS_ID, EOS_ID, PAD_ID)  # (B, N, L), (B, N), (B, N, L, S)
        scores, tokens = found.scores.tolist(), found.tokens.tolist()
        weights = found.attention.float().cpu() if attention and found.attention is not None else None
        for row, i in enumerate(todo):
            hypotheses = []
            for n, ids in enumerate(tokens[row]):
                ids = _until_eos(ids)
                matrix = None
                if weights is not None:
                    matrix = weights[row, n, : len(ids), : len(results[i].source_tokens)].tolist()
                hypotheses.append(
                    Hypothesis(
                        decode(self.target_tokenizer, ids),
                        float(scores[row][n]),
                        [self.target_tokenizer.id_to_token(token) for token in ids],
                        matrix,
                    )
                )
            results[i].hypotheses = hypotheses
        return results

    def _source_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.source_tokenizer.id_to_token(token) for token in ids] + [self.source_tokenizer.id_to_token(EOS_ID)]

    def info(self) -> dict[str, Any]:
        """What the model is: languages, cell, layers, attention, parameters, vocabulary sizes, recorded metrics,
        the default decoding and the backend."""
        return {
            **self._info,
            "source_vocab_size": self.source_tokenizer.get_vocab_size(),
            "target_vocab_size": self.target_tokenizer.get_vocab_size(),
            "max_source_length": self.max_source_length,
            "has_attention": self.has_attention,
            "decoding": {"name": self.kind(), **{k: v for k, v in self.decoding.items() if k != "_target_"}},
        }


def _until_eos(ids: Sequence[int]) -> list[int]:
    """``ids`` up to and including the first ``<eos>`` (the padding after it dropped)."""
    out = []
    for token in ids:
        if token == PAD_ID:
            break
        out.append(int(token))
        if token == EOS_ID:
            break
    return out


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA where there is one, else the CPU; any other name as it is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_translator(
    ckpt_path: Any,
    decoding: DictConfig | Mapping[str, Any] | None = None,
    device: str = "cpu",
    backend: str = "torch",
) -> Translator:
    """The `Translator` of one checkpoint, or of the ensemble of several (``ckpt_path`` a list).

    Args:
        ckpt_path: a checkpoint path or a list of them (one vocabulary; the first one's data and decoding); or
            directories written by ``src/export.py``, decoded by ONNX Runtime whatever ``backend`` says.
        decoding: a decoding config in place of the checkpoint's (checked before any checkpoint is read).
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``; the ONNX backend runs on the CPU (``auto`` too).
        backend: ``torch`` (eager PyTorch) or ``onnx`` (ONNX Runtime: checkpoints are exported to a temporary
            directory first, which takes seconds per checkpoint; `src/export.py` does it once).

    Raises:
        ConfigError / CheckpointError: one readable line (a bad path, decoding, backend or checkpoint).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: use backend=torch or backend=onnx")
    if isinstance(decoding, Mapping) and not isinstance(decoding, DictConfig):
        decoding = OmegaConf.create(dict(decoding))
    if decoding:
        verify_decoding(decoding)
    paths = checkpoint_paths(ckpt_path)
    exported = [is_exported(path) for path in paths]
    if any(exported) or backend == "onnx":
        if device != "auto" and resolve_device(device).type != "cpu":
            raise ConfigError(f"the ONNX backend runs on the CPU, not device={device}: pass device=cpu")
        if any(exported):
            if not all(exported):
                raise ConfigError("ckpt_path mixes exported directories and checkpoints: pass only one kind")
            return load_exported(paths, decoding)
    members = load_ensemble(paths, decoding)
    checkpoint, trained = members[0]  # the ensemble's tokenizers, data settings and decoding
    module = restore_ensemble(members)
    target = torch.device("cpu") if backend == "onnx" else resolve_device(device)
    module.to(target).eval()
    tokenizers = checkpoint_tokenizers(checkpoint)
    model = module.model
    if backend == "onnx":
        model = exported_now(module.model, members)
    return Translator(
        model=model,
        source_tokenizer=tokenizer_from_str(tokenizers["source"]),
        target_tokenizer=module.target_tokenizer,
        decoding=OmegaConf.to_container(trained.decoding, resolve=True),
        max_source_length=int(trained.data.get("max_length") or 0),
        device=target,
        info=model_info(paths, [trained for _, trained in members], module, backend),
    )


def exported_now(model: Any, members: Sequence[tuple[dict[str, Any], DictConfig]]) -> Any:
    """``model`` (a `Seq2Seq`, or an `Ensemble` of them) exported to temporary directories and loaded back as
    `OnnxModel`s (ONNX Runtime reads a graph whole when it loads it, so the directories go right after)."""
    models = list(model.members) if isinstance(model, Ensemble) else [model]
    loaded = []
    with tempfile.TemporaryDirectory(prefix="seq2seq-onnx-") as directory:
        for i, (member, (checkpoint, trained)) in enumerate(zip(models, members)):
            config = {**checkpoint["seq2seq"]["config"], "decoding": plain_config(trained.decoding)}
            path = export_onnx(member, checkpoint_tokenizers(checkpoint), config, Path(directory) / str(i))
            loaded.append(OnnxModel(path))
    return loaded[0] if len(loaded) == 1 else Ensemble(loaded)


def load_exported(paths: Sequence[str], decoding: DictConfig | None = None) -> Translator:
    """The `Translator` of directories written by ``src/export.py`` (one, or an ensemble with one vocabulary),
    decoded by ONNX Runtime; with ``decoding`` in place of the first directory's recorded decoding."""
    configs = [read_config(path) for path in paths]
    tokenizers = [exported_tokenizers(path, config) for path, config in zip(paths, configs)]
    check_same_vocabularies(paths, [{"seq2seq": {"tokenizers": t}} for t in tokenizers], SAME_VOCABULARIES)
    # an export of a bare model (no run config) records no decoding: greedy, as decoding=greedy's defaults
    settings = plain_config(decoding) if decoding else configs[0].get("decoding") or {"_target_": SEARCHES["greedy"]}
    verify_decoding(settings, origin=str(Path(paths[0]) / CONFIG_FILE))  # data beside the graphs: the allow-list
    models = [OnnxModel(path) for path in paths]
    first = configs[0]
    return Translator(
        model=models[0] if len(models) == 1 else Ensemble(models),
        source_tokenizer=tokenizer_from_str(tokenizers[0]["source"]),
        target_tokenizer=tokenizer_from_str(tokenizers[0]["target"]),
        decoding=settings,
        max_source_length=int(first["data"].get("max_length") or 0),
        device="cpu",
        info=exported_info(paths, configs),
    )


def exported_tokenizers(path: str | Path, config: Mapping[str, Any]) -> dict[str, str]:
    """The ``{"source": json, "target": json}`` tokenizers of an exported directory.

    Raises:
        CheckpointError: a tokenizer file is missing or unreadable.
    """
    try:
        return {side: (Path(path) / config["tokenizers"][side]).read_text(encoding="utf-8") for side in SIDES}
    except (OSError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} lacks a readable tokenizer ({error}): export the checkpoint again") from None


def exported_info(paths: Sequence[str], configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The `Translator.info` of exported directories, from their ``config.json`` (as `model_info` for checkpoints)."""
    first, model = configs[0], configs[0]["model"]
    return {
        "backend": "onnx",
        "checkpoints": [str(Path(path).resolve()) for path in paths],
        "source_lang": first["data"].get("source_lang"),
        "target_lang": first["data"].get("target_lang"),
        "cell": model.get("cell"),
        "encoder_layers": model.get("num_layers"),
        "bidirectional": model.get("bidirectional"),
        "hidden_size": model.get("hidden_size"),
        "embedding_dim": model.get("embedding_dim"),
        "attention": model.get("attention") or {"kind": "none"},
        "decoder_hidden_size": model.get("decoder_hidden_size"),
        "decoder_layers": model.get("decoder_num_layers"),
        "parameters": sum(config["model"]["parameters"] for config in configs),
        "metrics": [config.get("metrics", {}) for config in configs],
    }


def plain_config(node: Any) -> Any:
    """``node`` as plain containers (a DictConfig resolved), for JSON."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def model_info(paths: Sequence[str], configs: Sequence[DictConfig], module: Any, backend: str) -> dict[str, Any]:
    """The `Translator.info` of checkpoints: their model settings, parameters and the run's recorded metrics."""
    first = configs[0]
    model = first.model
    return {
        "backend": backend,
        "checkpoints": [str(Path(path).resolve()) for path in paths],
        "source_lang": first.data.get("source_lang"),
        "target_lang": first.data.get("target_lang"),
        "cell": model.get("cell"),
        "encoder_layers": model.get("num_layers"),
        "bidirectional": model.get("bidirectional"),
        "hidden_size": model.get("hidden_size"),
        "embedding_dim": model.get("embedding_dim"),
        "attention": plain_config(model.get("attention")) or {"kind": "none"},
        "decoder_hidden_size": model.get("decoder_hidden_size"),
        "decoder_layers": model.get("decoder_num_layers"),
        "parameters": sum(parameter.numel() for parameter in module.model.parameters()),
        "metrics": [recorded_run_metrics(path) for path in paths],
    }
