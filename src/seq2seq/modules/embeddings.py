"""Embedding matrices: tying them to the output layer and across sides, and filling them with pretrained vectors.

* `apply_tying` (``model.tie_embeddings``): ``decoder`` makes the target embedding matrix the output layer's
  weight (Press & Wolf, 2017); ``all`` also makes it the source embedding (one joint vocabulary needed). When the
  decoder's readout is not embedding-sized (Bahdanau's ``[s_t; c_t; e]``, a decoder wider than the embeddings), a
  bias-free projection maps it to the embedding size first, as OpenNMT-py and fairseq do.
* `load_pretrained_embeddings` (``model.pretrained_embeddings``): word vectors in the word2vec / GloVe / fastText
  text format (``.gz`` too, read by `seq2seq.data.word_vectors`) fill the rows of the tokens they cover, when a
  model is built for training; a model restored from a checkpoint takes its weights from there.
  `freeze_pretrained` keeps the loaded matrices fixed.

What is checked before the data is read (tying mode, vector files and their size) is in `seq2seq.config_checks`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from seq2seq.data.tokenizers import SPECIAL_TOKENS, tokenizer_from_str, vector_keys
from seq2seq.data.word_vectors import check_vector_size, read_vectors, vector_size
from seq2seq.errors import ConfigError

if TYPE_CHECKING:
    from seq2seq.modules.decoder import RecurrentDecoder
    from seq2seq.modules.seq2seq import Seq2Seq

log = logging.getLogger("seq2seq")

TIE_MODES = ("none", "decoder", "all")
SIDES = ("source", "target")
PRETRAINED_KEYS = (*SIDES, "freeze")
JOINT_FIX = "add data.joint_vocab=true (one tokenizer for both sides), or use model.tie_embeddings=decoder"


# --- tying ----------------------------------------------------------------------------------------------------


def tie_output(decoder: RecurrentDecoder) -> None:
    """Make the decoder's embedding matrix (V, E) its output layer's weight, with a projection F → E if F ≠ E.

    The shared matrix starts at N(0, 1/E), a linear layer's scale: nn.Embedding's N(0, 1) would give the output
    layer initial logits of standard deviation about √E. The output layer keeps its own bias.
    """
    vocab_size, embedding_dim = decoder.embedding.weight.shape
    readout_size = decoder.output.in_features
    if readout_size != embedding_dim:
        decoder.projection = nn.Linear(readout_size, embedding_dim, bias=False)
    decoder.output = nn.Linear(embedding_dim, vocab_size)
    with torch.no_grad():
        decoder.embedding.weight.normal_(0.0, embedding_dim**-0.5)
        if decoder.embedding.padding_idx is not None:
            decoder.embedding.weight[decoder.embedding.padding_idx].zero_()
    decoder.output.weight = decoder.embedding.weight  # one Parameter, under two names in the state_dict


def apply_tying(model: Seq2Seq, mode: str, joint_vocab: bool) -> None:
    """Share embedding matrices as ``model.tie_embeddings`` says: ``none``, ``decoder`` or ``all``.

    Args:
        model: the freshly built encoder-decoder.
        mode: ``none`` (three matrices), ``decoder`` (target embedding = output layer), ``all`` (= source embedding
            too).
        joint_vocab: whether source and target use one tokenizer (``all`` needs it).
    """
    if mode not in TIE_MODES:
        raise ConfigError(f"unknown model.tie_embeddings={mode!r}: use none, decoder or all")
    if mode == "all":
        check_joint(joint_vocab)
        if model.encoder.embedding.weight.shape != model.decoder.embedding.weight.shape:
            raise ConfigError(
                f"model.tie_embeddings=all needs one vocabulary, but the source has "
                f"{model.encoder.embedding.num_embeddings} tokens and the target "
                f"{model.decoder.embedding.num_embeddings}: {JOINT_FIX}"
            )
    if mode in ("decoder", "all"):
        tie_output(model.decoder)
    if mode == "all":
        model.encoder.embedding = model.decoder.embedding


def check_joint(joint_vocab: bool) -> None:
    """The error ``model.tie_embeddings=all`` gives without a joint vocabulary."""
    if not joint_vocab:
        raise ConfigError(f"model.tie_embeddings=all shares one embedding between source and target: {JOINT_FIX}")


# --- pretrained vectors ---------------------------------------------------------------------------------------


def pretrained_paths(spec: Mapping | None) -> dict[str, str]:
    """The vector files of ``model.pretrained_embeddings`` per side (``source``/``target``), checking its keys."""
    spec = dict(spec or {})
    if unknown := set(spec) - set(PRETRAINED_KEYS):
        raise ConfigError(
            f"model.pretrained_embeddings has no key {', '.join(sorted(unknown))}: its keys are source, target, freeze"
        )
    paths = {side: str(spec[side]) for side in SIDES if spec.get(side)}
    if spec.get("freeze") and not paths:
        raise ConfigError(
            "model.pretrained_embeddings.freeze=true freezes only loaded vectors: "
            "set model.pretrained_embeddings.source=PATH and/or .target=PATH"
        )
    return paths


def freeze_pretrained(model: Seq2Seq, spec: Mapping | None) -> None:
    """With ``freeze=true``, stop training the embedding matrices that pretrained vectors fill.

    The whole matrix is frozen, as in OpenNMT-py and Joey NMT (rows of tokens without a vector keep their random
    start); a tied output layer shares it and is frozen with it.
    """
    paths = pretrained_paths(spec)
    if not (spec or {}).get("freeze"):
        return
    for side in paths:
        embedding_of(model, side).weight.requires_grad_(False)


def embedding_of(model: Seq2Seq, side: str) -> nn.Embedding:
    """The embedding of ``side`` (``source`` or ``target``)."""
    return model.encoder.embedding if side == "source" else model.decoder.embedding


def load_vectors(embedding: nn.Embedding, vocab: Mapping[str, int], path: str | Path, side: str) -> int:
    """Fill the rows of ``embedding`` whose token has a vector in ``path``; log the coverage; return the count.

    A token matches the file's word spelled as the token itself, then without the tokenizer's word-start marker
    (``▁Hund`` → ``Hund``), then lowercased (see `vector_keys`); the special tokens keep their rows.
    """
    keys: dict[str, list[tuple[int, int]]] = {}  # file word -> [(preference, token id)]
    for token, index in vocab.items():
        if token in SPECIAL_TOKENS:
            continue
        for preference, key in enumerate(vector_keys(token)):
            keys.setdefault(key, []).append((preference, index))
    check_vector_size(path, vector_size(path), embedding.embedding_dim)
    vectors, _ = read_vectors(path, set(keys))
    best: dict[int, tuple[int, str]] = {}  # token id -> (preference, file word)
    for key in vectors:
        for preference, index in keys[key]:
            if index not in best or preference < best[index][0]:
                best[index] = (preference, key)
    if best:
        rows = torch.tensor(sorted(best))
        with torch.no_grad():
            embedding.weight[rows] = torch.stack([vectors[best[index][1]] for index in rows.tolist()]).to(
                embedding.weight.dtype
            )
    total = sum(token not in SPECIAL_TOKENS for token in vocab)
    percent = 100.0 * len(best) / total if total else math.nan
    found = f"{len(best):,} of {total:,} tokens"
    log.info("%s embeddings: %s found in %s (%.1f %%)", side, found, path, percent)
    return len(best)


def load_pretrained_embeddings(model: Seq2Seq, spec: Mapping | None, tokenizers: Mapping[str, str]) -> None:
    """Fill ``model``'s embeddings from ``model.pretrained_embeddings`` (``source``/``target`` paths).

    Args:
        model: a freshly built model (not one about to get a checkpoint's weights).
        spec: the ``model.pretrained_embeddings`` node, or ``None``.
        tokenizers: ``{"source": json, "target": json}``, whose vocabularies name the rows.
    """
    for side, path in pretrained_paths(spec).items():
        vocab = tokenizer_from_str(tokenizers[side]).get_vocab()
        load_vectors(embedding_of(model, side), vocab, path, side)
