"""Attention heatmaps: where each output token looked in the source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure


def plot_attention(
    weights: torch.Tensor | np.ndarray,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    title: str | None = None,
) -> Figure:
    """A heatmap of ``weights`` (target_len, source_len): rows are output tokens, columns source tokens.

    The matrix is cut to the given token lists, so padding beyond them is not drawn. Built on
    `matplotlib.figure.Figure` (no pyplot state), so it works headless, in threads and in notebooks.
    """
    matrix = torch.as_tensor(weights, dtype=torch.float32).cpu().numpy()[: len(target_tokens), : len(source_tokens)]
    width = min(16.0, 2.5 + 0.4 * len(source_tokens))
    height = min(16.0, 2.0 + 0.35 * len(target_tokens))
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source_tokens)), labels=list(source_tokens), rotation=90)
    axes.set_yticks(range(len(target_tokens)), labels=list(target_tokens))
    axes.set_xlabel("source")
    axes.set_ylabel("output")
    if title:
        axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.04)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def tokens_until_eos(ids: Sequence[int], tokenizer, eos_id: int) -> list[str]:
    """The token strings of ``ids`` up to and including the first ``<eos>`` (padding after it dropped)."""
    tokens = []
    for token_id in ids:
        tokens.append(tokenizer.id_to_token(int(token_id)))
        if token_id == eos_id:
            break
    return tokens


def attention_figure(
    weights: torch.Tensor, src_ids: Sequence[int], out_ids: Sequence[int], src_tokenizer, tgt_tokenizer, eos_id: int
) -> Figure:
    """The heatmap of one decoded sentence: ``weights`` (L, S) over source ids and output ids (each to ``<eos>``)."""
    source = tokens_until_eos(src_ids, src_tokenizer, eos_id)
    output = tokens_until_eos(out_ids, tgt_tokenizer, eos_id)
    return plot_attention(weights, source, output)
