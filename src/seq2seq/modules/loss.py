"""Token cross-entropy fused with the output layer: the (N, V) logits never exist all at once."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

# Elements of one chunk of logits: 4M fp32 (16 MiB) stays in a CPU's cache hierarchy and is reused by the
# allocator; a GPU is fed larger matrix products.
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 25}
# Under fp16 a chunk has at most this many rows: its weight gradient, a sum over the rows of (softmax − one-hot)
# times features, then stays far below fp16's maximum (65504) for features of magnitude up to ~30.
FP16_CHUNK_ROWS = 2048


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean (label-smoothed) cross-entropy of ``linear(features)`` over the targets that are not ``ignore_index``.

    Returns the loss and, without gradient, the unsmoothed cross-entropy (the same value at ``label_smoothing=0``).
    With smoothing ε a row's loss is ``(1 − ε)·(−log p_y) + ε·mean_v(−log p_v)`` (PyTorch's definition), so its
    gradient with respect to the logits is ``softmax − (1 − ε)·one-hot − ε/V``: every entry still lies in [−1, 1].

    The forward pass walks the rows in chunks and computes, per chunk, the logits, the loss and at once the
    gradients with respect to features, weight and bias; backward only scales them. The gradients are kept
    unnormalized, from (softmax − one-hot) whose entries are at most 1, and backward multiplies them by
    ``grad_loss / n`` in fp32: under ``16-mixed`` that factor carries the loss scale, so, as in the plain path,
    nothing is divided by the token count before the scale is applied (16k targets would push the entries below
    fp16's range). With ``drop_padding`` the padded rows are removed before the output layer; otherwise they are
    computed and masked, which never waits for the device to count them.
    """

    @staticmethod
    def forward(ctx, features, weight, bias, target, ignore_index: int, drop_padding: bool, smoothing: float):  # noqa: ANN001, ANN205
        device = features.device.type
        autocast = torch.is_autocast_enabled(device)
        dtype = torch.get_autocast_dtype(device) if autocast else features.dtype  # matrix products
        keep = target != ignore_index  # (N,)
        count = keep.sum().clamp(min=1)  # a tensor: dividing by it needs no sync
        if drop_padding:
            rows = keep.nonzero().squeeze(1)  # (n,)
            kept, target, keep = features.index_select(0, rows), target.index_select(0, rows), None  # (n, F), (n,)
        else:
            kept, target = features, target.masked_fill(~keep, 0)  # a valid index on padded rows, masked below
        kept = kept.to(dtype)
        vocab = weight.size(0)
        chunk = max(1, CHUNK_ELEMENTS.get(device, 1 << 22) // vocab)
        if dtype == torch.float16:  # one chunk's weight gradient sums `chunk` rows: keep it inside fp16's range
            chunk = min(chunk, FP16_CHUNK_ROWS)
        grad_kept = torch.empty_like(kept)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32)
        grad_bias = torch.zeros(vocab, dtype=torch.float32, device=weight.device) if bias is not None else None
        total = torch.zeros((), dtype=torch.float32, device=features.device)
        total_nll = torch.zeros((), dtype=torch.float32, device=features.device) if smoothing else total
        with torch.autocast(device, enabled=False):
            weight_ = weight.to(dtype)
            bias_ = bias.to(dtype) if bias is not None else None
            for start in range(0, kept.size(0), chunk):
                x, y = kept[start : start + chunk], target[start : start + chunk]  # (c, F), (c,)
                logits = (torch.addmm(bias_, x, weight_.t()) if bias_ is not None else x @ weight_.t()).float()
                normalizer = logits.logsumexp(-1)  # (c,)
                nll = normalizer - logits.gather(1, y[:, None]).squeeze(1)  # (c,)
                losses = nll  # (c,); with smoothing, −mean_v log p_v = normalizer − mean_v logit_v is mixed in
                if smoothing:
                    losses = (1.0 - smoothing) * nll + smoothing * (normalizer - logits.mean(-1))
                grad = logits.sub_(normalizer[:, None]).exp_()  # softmax, in place: (c, V)
                grad[torch.arange(y.numel(), device=y.device), y] -= 1.0 - smoothing
                if smoothing:
                    grad.sub_(smoothing / vocab)
                if keep is not None:  # padded rows: no loss, no gradient
                    mask = keep[start : start + chunk]
                    losses, nll, grad = losses * mask, nll * mask, grad.mul_(mask[:, None])
                total += losses.sum()
                if smoothing:
                    total_nll += nll.sum()
                if grad_bias is not None:
                    grad_bias += grad.sum(0)
                grad = grad.to(dtype)
                grad_kept[start : start + chunk] = grad @ weight_  # (c, F)
                if dtype == torch.float32:
                    grad_weight.addmm_(grad.t(), x)  # (V, F)
                else:
                    grad_weight += (grad.t() @ x).float()
        grad_kept = grad_kept.to(features.dtype)
        grad_features = torch.zeros_like(features).index_copy_(0, rows, grad_kept) if drop_padding else grad_kept
        # n · d(mean loss)/d(features, weight, bias): scaled by grad_loss / n in backward
        ctx.save_for_backward(grad_features, grad_weight, grad_bias, count)
        ctx.has_bias = bias is not None
        ctx.weight_dtype = weight.dtype
        nll = total_nll / count
        ctx.mark_non_differentiable(nll)
        return total / count, nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, grad_nll):  # noqa: ANN001, ANN205, ARG004
        grad_features, grad_weight, grad_bias, count = ctx.saved_tensors
        scale = grad_loss.float() / count  # the loss scale over the token count, in fp32

        def scaled(grad: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            return (grad.float() * scale).to(dtype)

        grad_bias = scaled(grad_bias, ctx.weight_dtype) if ctx.has_bias else None
        grad_features = scaled(grad_features, grad_features.dtype)
        return grad_features, scaled(grad_weight, ctx.weight_dtype), grad_bias, None, None, None, None


class TokenLoss(NamedTuple):
    """A training loss over the non-pad target tokens and the plain cross-entropy it is compared by.

    Attributes:
        loss: the objective, mean over the tokens of the label-smoothed cross-entropy (differentiable).
        nll: the mean token cross-entropy without smoothing, without gradient (``loss``'s value at ε = 0): the
            figure that compares with ``val/loss`` and across runs.
    """

    loss: torch.Tensor
    nll: torch.Tensor


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, label_smoothing: float = 0.0
) -> TokenLoss:
    """``F.cross_entropy(logits, target, ignore_index=…, label_smoothing=…)`` and the unsmoothed one.

    ``logits`` (N, V), ``target`` (N,). The unsmoothed value costs a second softmax only when smoothing.
    """
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if not label_smoothing:
        return TokenLoss(loss, loss.detach())
    with torch.no_grad():
        return TokenLoss(loss, F.cross_entropy(logits, target, ignore_index=ignore_index))


def linear_cross_entropy(
    features: torch.Tensor,
    output: nn.Linear,
    target: torch.Tensor,
    ignore_index: int,
    drop_padding: bool | None = None,
    label_smoothing: float = 0.0,
) -> TokenLoss:
    """`cross_entropy` of ``output(features)``: the mean (label-smoothed) loss over kept targets, and the plain one.

    ``features`` (N, F), ``target`` (N,). With gradients enabled it runs the fused chunked computation, which
    never holds the (N, V) logits or their gradient (a batch with no target to score has loss 0 there); without,
    the plain one. ``drop_padding``: skip the padded rows' output layer instead of masking it; ``None`` = on the
    CPU, where counting them costs nothing (on a GPU it would wait for the device). ``label_smoothing``: ε in
    [0, 1), PyTorch's definition: ``(1 − ε)·NLL + ε·mean over the vocabulary of −log p``.
    """
    if not (torch.is_grad_enabled() and (features.requires_grad or output.weight.requires_grad)):
        return cross_entropy(output(features), target, ignore_index, label_smoothing)
    if drop_padding is None:
        drop_padding = features.device.type == "cpu"
    loss, nll = _LinearCrossEntropy.apply(
        features, output.weight, output.bias, target, ignore_index, drop_padding, float(label_smoothing)
    )
    return TokenLoss(loss, nll)
