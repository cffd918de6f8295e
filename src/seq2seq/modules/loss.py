"""Token cross-entropy fused with the output layer: the (N, V) logits never exist all at once."""

from __future__ import annotations

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
    """Mean cross-entropy of ``linear(features)`` over the targets that are not ``ignore_index``.

    The forward pass walks the rows in chunks and computes, per chunk, the logits, the loss and at once the
    gradients with respect to features, weight and bias; backward only scales them. The gradients are kept
    unnormalized, from (softmax − one-hot) whose entries are at most 1, and backward multiplies them by
    ``grad_loss / n`` in fp32: under ``16-mixed`` that factor carries the loss scale, so, as in the plain path,
    nothing is divided by the token count before the scale is applied (16k targets would push the entries below
    fp16's range). With ``drop_padding`` the padded rows are removed before the output layer; otherwise they are
    computed and masked, which never waits for the device to count them.
    """

    @staticmethod
    def forward(ctx, features, weight, bias, target, ignore_index: int, drop_padding: bool):  # noqa: ANN001, ANN205
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
        with torch.autocast(device, enabled=False):
            weight_ = weight.to(dtype)
            bias_ = bias.to(dtype) if bias is not None else None
            for start in range(0, kept.size(0), chunk):
                x, y = kept[start : start + chunk], target[start : start + chunk]  # (c, F), (c,)
                logits = (torch.addmm(bias_, x, weight_.t()) if bias_ is not None else x @ weight_.t()).float()
                normalizer = logits.logsumexp(-1)  # (c,)
                losses = normalizer - logits.gather(1, y[:, None]).squeeze(1)  # (c,)
                grad = logits.sub_(normalizer[:, None]).exp_()  # softmax, in place: (c, V)
                grad[torch.arange(y.numel(), device=y.device), y] -= 1.0
                if keep is not None:  # padded rows: no loss, no gradient
                    mask = keep[start : start + chunk]
                    losses, grad = losses * mask, grad.mul_(mask[:, None])
                total += losses.sum()
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
        return total / count

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):  # noqa: ANN001, ANN205
        grad_features, grad_weight, grad_bias, count = ctx.saved_tensors
        scale = grad_loss.float() / count  # the loss scale over the token count, in fp32

        def scaled(grad: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            return (grad.float() * scale).to(dtype)

        grad_bias = scaled(grad_bias, ctx.weight_dtype) if ctx.has_bias else None
        grad_features = scaled(grad_features, grad_features.dtype)
        return grad_features, scaled(grad_weight, ctx.weight_dtype), grad_bias, None, None, None


def linear_cross_entropy(
    features: torch.Tensor,
    output: nn.Linear,
    target: torch.Tensor,
    ignore_index: int,
    drop_padding: bool | None = None,
) -> torch.Tensor:
    """``F.cross_entropy(output(features), target, ignore_index=ignore_index)`` (the mean over kept targets).

    ``features`` (N, F), ``target`` (N,). With gradients enabled it runs the fused chunked computation, which
    never holds the (N, V) logits or their gradient (a batch with no target to score has loss 0 there); without,
    the plain one. ``drop_padding``: skip the padded rows' output layer instead of masking it; ``None`` = on the
    CPU, where counting them costs nothing (on a GPU it would wait for the device).
    """
    if not (torch.is_grad_enabled() and (features.requires_grad or output.weight.requires_grad)):
        return F.cross_entropy(output(features), target, ignore_index=ignore_index)
    if drop_padding is None:
        drop_padding = features.device.type == "cpu"
    return _LinearCrossEntropy.apply(features, output.weight, output.bias, target, ignore_index, drop_padding)
