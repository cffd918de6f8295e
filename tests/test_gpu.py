"""The GPU path: no host–device synchronisation in a training step, the requested precision, GPU = CPU.

Tests marked ``gpu`` need CUDA and are skipped without it; run them with ``pytest -m gpu`` (or
``bash benchmarks/gpu_check.sh``, which runs them with the benchmarks). The unmarked tests check on the CPU what
can be checked there.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.nn import functional as F

from seq2seq.build import build_module
from seq2seq.decoding import BeamSearch, GreedySearch
from seq2seq.modules import Seq2Seq
from seq2seq.utils.cli import plain

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_wheels  # noqa: E402

PAD, SOS, EOS = 0, 2, 3
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
ATTENTIONS = {
    "none": None,
    "bahdanau": {"kind": "bahdanau"},
    "luong": {"kind": "luong", "input_feeding": False},
    "luong_feed": {"kind": "luong", "input_feeding": True},
}


def _config(*overrides: str):
    """The train config of the reverse task, small, with ``overrides``."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "train.yaml",
            overrides=[
                "experiment=reverse",
                "logger=csv",
                "callbacks=none",
                "data.source.num_train=2048",
                "data.source.num_val=128",
                "data.source.num_test=128",
                "data.source.max_length=8",
                "data.cache_dir=null",
                f"paths.root_dir={ROOT}",
                "paths.output_dir=/tmp",
                *overrides,
            ],
        )


def _module_and_data(*overrides: str):
    cfg = _config(*overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return build_module(cfg, datamodule.tokenizers_state(), config=plain(cfg)), datamodule, cfg


def test_training_step_logs_no_python_number_and_nothing_the_progress_bar_reads_back(monkeypatch):
    """A Python float logged (the teacher-forcing ratio) becomes a device tensor by a blocking host-to-device copy,
    and a progress-bar metric is read back with ``.item()`` at every refresh: both wait for the device each step."""
    module, datamodule, _ = _module_and_data("teacher_forcing=linear")
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kwargs: logged.update({name: (value, kwargs)}))
    batch = next(iter(datamodule.train_dataloader()))
    module.training_step(batch, 0)
    assert {"train/loss", "train/tf_ratio"} <= set(logged)
    for name, (value, kwargs) in logged.items():
        assert isinstance(value, torch.Tensor), f"{name} is logged as a {type(value).__name__}"
        assert not kwargs.get("prog_bar", False), f"{name} is on the progress bar"


def gpu(test):
    """Mark ``test`` as a GPU test: selected by ``pytest -m gpu``, skipped without CUDA."""
    return pytest.mark.gpu(needs_cuda(test))


@pytest.fixture
def exact_fp32():
    """fp32 without TF32 (cuBLAS and cuDNN use it by default on Ampere and newer), for comparisons with the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _model(attention, cell="gru", vocab=(13, 11), seed=0, **sizes) -> Seq2Seq:
    torch.manual_seed(seed)
    options = {"embedding_dim": 16, "hidden_size": 24, "num_layers": 2, "bidirectional": True, **sizes}
    return Seq2Seq(*vocab, cell=cell, attention=ATTENTIONS[attention], pad_id=PAD, **options)


def _batch(batch=6, src_len=9, tgt_len=7, vocab=(13, 11), seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab[0], (batch, src_len), generator=gen)
    src_lengths = torch.randint(1, src_len + 1, (batch,), generator=gen)
    src_lengths[0] = src_len
    src[torch.arange(src_len) >= src_lengths[:, None]] = PAD
    tgt = torch.randint(4, vocab[1], (batch, tgt_len + 1), generator=gen)
    tgt_lengths = torch.randint(2, tgt_len + 2, (batch,), generator=gen)
    tgt[torch.arange(tgt_len + 1) >= tgt_lengths[:, None]] = PAD
    tgt[:, 0] = SOS
    return src, src_lengths, tgt[:, :-1].contiguous(), tgt[:, 1:].contiguous()


def _loss_and_grads(model: Seq2Seq, batch, device, **kwargs):
    src, src_lengths, tgt_in, tgt_out = batch
    model.zero_grad(set_to_none=True)
    loss = model.loss(src.to(device), src_lengths, tgt_in.to(device), tgt_out.to(device), **kwargs)
    loss.backward()
    return loss.detach().float().cpu(), {name: p.grad.float().cpu() for name, p in model.named_parameters()}


@gpu
@pytest.mark.parametrize("tf_ratio", [1.0, 0.0], ids=["fused", "stepped"])  # 0.0: always the model's own argmax
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_gpu_loss_and_gradients_equal_the_cpu_ones_in_fp32(exact_fp32, attention, cell, tf_ratio):
    model = _model(attention, cell).train()
    batch = _batch()
    cpu_loss, cpu_grads = _loss_and_grads(model, batch, "cpu", tf_ratio=tf_ratio)
    gpu_loss, gpu_grads = _loss_and_grads(copy.deepcopy(model).cuda(), batch, "cuda", tf_ratio=tf_ratio)
    torch.testing.assert_close(gpu_loss, cpu_loss, rtol=1e-5, atol=1e-6)
    for name, want in cpu_grads.items():
        torch.testing.assert_close(gpu_grads[name], want, rtol=1e-4, atol=1e-6, msg=name)


@gpu
@pytest.mark.parametrize("search", [GreedySearch(max_length=12), BeamSearch(beam_size=4, max_length=12)])
@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_gpu_greedy_and_beam_outputs_equal_the_cpu_ones(exact_fp32, attention, search):
    # larger weights than the default init: wide gaps between the best and second-best tokens, so no tie flips
    model = _model(attention, "lstm").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    src, src_lengths, _, _ = _batch(batch=8)
    with torch.no_grad():
        cpu = search(model, src, src_lengths, SOS, EOS, PAD)
        on_gpu = search(copy.deepcopy(model).cuda(), src.cuda(), src_lengths, SOS, EOS, PAD)
    assert torch.equal(on_gpu.tokens.cpu(), cpu.tokens)
    torch.testing.assert_close(on_gpu.scores.cpu(), cpu.scores, rtol=1e-4, atol=1e-4)


@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_cudnn_rnns_run_in_the_autocast_dtype(cell, dtype):
    """Autocast's cuDNN RNN wrapper casts to fp16 whatever the autocast dtype; ours run in the one asked for."""
    from seq2seq.modules.rnn import make_rnn

    rnn = make_rnn(cell, 8, 16, num_layers=2, dropout=0.0, bidirectional=True).cuda()
    with torch.autocast("cuda", dtype=dtype):
        output, _ = rnn(torch.randn(3, 5, 8, device="cuda"))
    assert output.dtype == dtype


PRECISIONS = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "bf16-true": torch.bfloat16}


@gpu
@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_reduced_precision_steps_are_finite_and_close_to_fp32(exact_fp32, attention, precision):
    model = _model(attention, "lstm", vocab=(50, 300), embedding_dim=64, hidden_size=64).cuda().train()
    batch = _batch(batch=32, src_len=12, tgt_len=10, vocab=(50, 300))
    want_loss, want_grads = _loss_and_grads(model, batch, "cuda")
    dtype = PRECISIONS[precision]
    if precision.endswith("-true"):
        lowered = copy.deepcopy(model).to(dtype)
        loss, grads = _loss_and_grads(lowered, batch, "cuda")
    else:
        with torch.autocast("cuda", dtype=dtype):
            loss, grads = _loss_and_grads(model, batch, "cuda")
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, want_loss, rtol=3e-2, atol=0)
    least_cosine = 0.95 if precision.endswith("-true") else 0.98  # -true: weights and optimizer math in bf16 too
    for name, want in want_grads.items():
        assert torch.isfinite(grads[name]).all(), name
        cosine = F.cosine_similarity(grads[name].flatten(), want.flatten(), dim=0)
        assert cosine > least_cosine, f"{name}: cosine {cosine:.4f} with the fp32 gradient"


class _SyncGuard(L.Callback):
    """Error on any host–device synchronisation from the start of a training batch (the batch is on the device
    by then) to its end, optimizer step included."""

    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if batch_idx >= 2:  # the first steps allocate and tune (cuDNN, pinned memory pools)
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if torch.cuda.get_sync_debug_mode():
            self.steps += 1
        torch.cuda.set_sync_debug_mode("default")


def _trainer(precision: str, **options) -> L.Trainer:
    options = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, **options}
    return L.Trainer(accelerator="gpu", devices=1, precision=precision, enable_model_summary=False, **options)


@gpu
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "bf16-true"])
@pytest.mark.parametrize(
    "overrides",
    [
        ["model=lstm", "attention=none"],
        ["model=gru", "attention=bahdanau"],
        ["model=lstm", "attention=luong", "attention.input_feeding=true"],
        ["model=gru", "attention=luong", "teacher_forcing=linear", "teacher_forcing.mode=parallel"],
        ["model=gru", "attention=none", "teacher_forcing=linear"],  # the exact step loop
    ],
    ids=["lstm", "bahdanau", "luong_feed", "parallel", "exact"],
)
def test_training_steps_never_wait_for_the_device(overrides, precision):
    """Whole Lightning training steps (forward, fused loss, logging, backward, clipping, Adam) under
    ``torch.cuda.set_sync_debug_mode("error")``. ``16-mixed`` is left out: its GradScaler reads the inf check back
    in every optimizer step by design."""
    module, datamodule, _ = _module_and_data(*overrides)
    guard = _SyncGuard()
    trainer = _trainer(
        precision,
        max_steps=6,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        log_every_n_steps=1000,
        callbacks=[guard],
    )
    trainer.fit(module, datamodule=datamodule)
    assert guard.steps == 4


@gpu
@pytest.mark.slow
def test_reverse_task_learns_on_gpu_in_bf16():
    L.seed_everything(0)
    module, datamodule, cfg = _module_and_data("data.source.num_train=20000", "data.source.max_length=8")
    trainer = _trainer("bf16-mixed", max_epochs=cfg.trainer.max_epochs, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.validate(module, datamodule=datamodule)[0]
    assert metrics["val/exact_match"] >= 0.9, metrics


@gpu
def test_fused_loss_never_holds_the_logits():
    """Peak memory of loss + backward with a 32k vocabulary: well under one (B·T, V) fp32 logits tensor for the
    fused loss; the plain loss (logits, their log-softmax and its gradient) exceeds it, so the bound can fail."""
    vocab, batch_size, length = 32000, 128, 50
    model = _model("none", "gru", vocab=(100, vocab), embedding_dim=256, hidden_size=256, num_layers=1).cuda()
    batch = _batch(batch=batch_size, src_len=20, tgt_len=length, vocab=(100, vocab))
    logits_bytes = batch_size * length * vocab * 4

    def fused_loss(src, src_lengths, tgt_in, tgt_out):
        return model.loss(src, src_lengths, tgt_in, tgt_out)

    def plain_loss(src, src_lengths, tgt_in, tgt_out):
        logits = model(src, src_lengths, tgt_in)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)

    def peak(loss_fn) -> int:
        src, src_lengths, tgt_in, tgt_out = (t.cuda() if t is not batch[1] else t for t in batch)
        for _ in range(2):  # the first pass warms up cuDNN workspaces and the allocator's pools
            model.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = torch.cuda.memory_allocated()
            loss_fn(src, src_lengths, tgt_in, tgt_out).backward()
            torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start

    fused, plain = peak(fused_loss), peak(plain_loss)
    assert fused < logits_bytes / 2, f"fused loss peak {fused / 2**20:.0f} MiB"
    assert plain > logits_bytes, f"plain loss peak {plain / 2**20:.0f} MiB"


def _dry_run(tmp_path, wheels, stages: str) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "WHEELS": str(wheels), "OUT": str(out), "GPU_CHECK_STAGES": stages}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, (out / "summary.md").read_text()


def test_gpu_check_dry_run_checks_the_wheel_folder_and_the_train_command(tmp_path):
    """The dry run's cheap stages: the wheel folder holds every package the GPU image lacks (here empty stand-ins
    named like the real wheels) and the Multi30k command's config composes; a missing wheel fails it loudly."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, version in gpu_wheels.missing_packages().items():
        (wheels / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").touch()
    result, summary = _dry_run(tmp_path, wheels, "wheels multi30k")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| wheels | ok |" in summary and "| multi30k | ok |" in summary
    assert "experiment=multi30k_bahdanau" not in result.stderr  # no Hydra error about the command

    next(wheels.glob("hydra_core-*.whl")).unlink()
    result, summary = _dry_run(tmp_path, wheels, "wheels")
    assert result.returncode == 1
    assert "error: wheel folder" in result.stdout and "hydra-core==" in result.stdout  # the stage's own output
    assert "stage wheels FAILED" in result.stderr
    assert "| wheels | FAILED" in summary
