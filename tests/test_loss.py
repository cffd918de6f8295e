"""The fused output-layer + cross-entropy loss computes the same function as the plain one, with label smoothing too."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from seq2seq.modules import Seq2Seq
from seq2seq.modules import loss as loss_module
from seq2seq.modules.loss import linear_cross_entropy

PAD = 0
ATTENTIONS = [None, {"kind": "bahdanau"}, {"kind": "luong", "input_feeding": True}, {"kind": "luong"}]
# label smoothing ε: off, and the usual value
SMOOTHING = pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["eps0", "eps0.1"])


def _problem(rows=40, features=8, vocab=17, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=gen, requires_grad=True)
    output = nn.Linear(features, vocab)
    target = torch.randint(1, vocab, (rows,), generator=gen)
    target[::3] = PAD  # a third of the positions are padding
    return x, output, target


def _grads(loss, x, output):
    loss.backward()
    grads = [t.grad.clone() for t in (x, output.weight, output.bias)]
    for t in (x, output.weight, output.bias):
        t.grad = None
    return grads


@SMOOTHING
@pytest.mark.parametrize("drop_padding", [True, False], ids=["dropped", "masked"])
@pytest.mark.parametrize("chunk_elements", [17 * 5, 1 << 22])  # 5 rows per chunk (several chunks), one chunk
def test_fused_loss_and_gradients_equal_the_plain_ones(monkeypatch, chunk_elements, drop_padding, smoothing):
    monkeypatch.setitem(loss_module.CHUNK_ELEMENTS, "cpu", chunk_elements)
    x, output, target = _problem()
    plain = F.cross_entropy(output(x), target, ignore_index=PAD, label_smoothing=smoothing)
    plain_grads = _grads(plain, x, output)
    fused, nll = linear_cross_entropy(x, output, target, PAD, drop_padding=drop_padding, label_smoothing=smoothing)
    assert not nll.requires_grad
    torch.testing.assert_close(nll, F.cross_entropy(output(x), target, ignore_index=PAD).detach())  # unsmoothed
    fused_grads = _grads(fused * 3.0, x, output)  # a scaled loss scales the gradients
    torch.testing.assert_close(fused, plain)
    for got, want in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, 3.0 * want)
    assert fused_grads[0][target == PAD].abs().sum() == 0  # padded rows get no gradient


@SMOOTHING
@pytest.mark.parametrize("drop_padding", [True, False], ids=["dropped", "masked"])
def test_fused_loss_of_only_padding_is_zero(drop_padding, smoothing):
    x, output, target = _problem()
    padding = torch.full_like(target, PAD)
    loss, nll = linear_cross_entropy(x, output, padding, PAD, drop_padding=drop_padding, label_smoothing=smoothing)
    assert loss.item() == 0.0 and nll.item() == 0.0
    assert all(g.abs().sum() == 0 for g in _grads(loss, x, output))


@SMOOTHING
@pytest.mark.parametrize("drop_padding", [True, False], ids=["dropped", "masked"])
def test_fused_loss_under_bf16_autocast_is_close_to_fp32(drop_padding, smoothing):
    x, output, target = _problem(rows=64, features=32, vocab=50)
    plain = F.cross_entropy(output(x), target, ignore_index=PAD, label_smoothing=smoothing)
    plain_grads = _grads(plain, x, output)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, nll = linear_cross_entropy(x, output, target, PAD, drop_padding=drop_padding, label_smoothing=smoothing)
    assert fused.dtype == nll.dtype == torch.float32
    torch.testing.assert_close(nll, F.cross_entropy(output(x), target, ignore_index=PAD).detach(), atol=2e-2, rtol=2e-2)
    fused_grads = _grads(fused, x, output)
    torch.testing.assert_close(fused, plain, atol=2e-2, rtol=2e-2)
    for got, want in zip(fused_grads, plain_grads, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, atol=5e-3, rtol=5e-2)


@SMOOTHING
def test_without_gradients_the_plain_loss_is_used(smoothing):
    x, output, target = _problem()
    with torch.no_grad():
        loss, nll = linear_cross_entropy(x, output, target, PAD, label_smoothing=smoothing)
        assert torch.equal(loss, F.cross_entropy(output(x), target, ignore_index=PAD, label_smoothing=smoothing))
        assert torch.equal(nll, F.cross_entropy(output(x), target, ignore_index=PAD))


def _model_and_batch(attention, cell="gru", smoothing=0.0):
    torch.manual_seed(0)
    model = Seq2Seq(
        13,
        11,
        cell=cell,
        embedding_dim=8,
        hidden_size=12,
        bidirectional=True,
        attention=attention,
        label_smoothing=smoothing,
    )
    src = torch.randint(4, 13, (5, 7))
    src_lengths = torch.tensor([7, 6, 4, 3, 1])
    for i, n in enumerate(src_lengths):
        src[i, n:] = PAD
    tgt_out = torch.randint(4, 11, (5, 6))
    tgt_out[1, 4:] = PAD
    tgt_out[3, 2:] = PAD
    tgt_in = torch.cat([torch.full((5, 1), 2), tgt_out[:, :-1]], dim=1)
    return model, (src, src_lengths, tgt_in), tgt_out


@SMOOTHING
@pytest.mark.parametrize("attention", ATTENTIONS, ids=["none", "bahdanau", "luong_feed", "luong"])
@pytest.mark.parametrize("tf_ratio,tf_mode", [(1.0, "exact"), (0.5, "parallel"), (0.5, "exact")])
def test_model_loss_equals_cross_entropy_of_its_logits(attention, tf_ratio, tf_mode, smoothing):
    model, inputs, tgt_out = _model_and_batch(attention, cell="lstm" if attention else "gru", smoothing=smoothing)
    torch.manual_seed(1)  # the same coins for both
    logits = model(*inputs, tf_ratio=tf_ratio, tf_mode=tf_mode)
    plain = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD, label_smoothing=smoothing)
    unsmoothed = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD).detach()
    plain.backward()
    plain_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    loss, nll = model.losses(*inputs, tgt_out, tf_ratio=tf_ratio, tf_mode=tf_mode)
    loss.backward()
    torch.testing.assert_close(loss, plain)
    torch.testing.assert_close(nll, unsmoothed)
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], msg=name)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@SMOOTHING
@pytest.mark.parametrize("drop_padding", [True, False], ids=["dropped", "masked"])
def test_fused_loss_under_fp16_autocast_is_as_accurate_as_the_plain_loss(drop_padding, smoothing):
    """16-mixed: with 16k targets, (softmax − one-hot)/n underflows in fp16 unless it is scaled afterwards.

    The loss is scaled by 1024 (a loss scaler's job) before backward; each path's gradients are compared with the
    fp32 reference and the fused one must not be markedly worse than the plain one.
    """
    x, output, target = _problem(rows=16384, features=32, vocab=256)
    scale = 1024.0
    options = {"ignore_index": PAD, "label_smoothing": smoothing}
    reference = _grads(F.cross_entropy(output(x), target, **options) * scale, x, output)
    with torch.autocast("cpu", dtype=torch.float16):
        plain = _grads(F.cross_entropy(output(x), target, **options) * scale, x, output)
        fused_loss = linear_cross_entropy(x, output, target, PAD, drop_padding=drop_padding, label_smoothing=smoothing)
        fused = _grads(fused_loss.loss * scale, x, output)
    for name, want, got_plain, got_fused in zip(("features", "weight", "bias"), reference, plain, fused):
        plain_error, fused_error = _relative_error(got_plain, want), _relative_error(got_fused, want)
        assert fused_error <= 1.5 * plain_error + 1e-4, f"{name}: fused {fused_error:.1e}, plain {plain_error:.1e}"
