"""Training speed: our `Seq2Seq` against the textbook implementation, scaling, and Lightning's overhead.

Four tables, each measured side by side in one run (the rows of a table interleaved within every round,
medians over rounds), so a busy machine slows every row alike and the ratios stay meaningful:

1. **grid**: target tokens/s of one training step (forward, loss, backward, gradient clipping, Adam step) for
   each cell × attention × size: our model at teacher-forcing ratio 1.0, 0.5 (exact step loop) and 0.5
   (``tf_mode="parallel"``), optionally bf16 autocast (CUDA) and ``model.compile=true``, against the textbook model
   (``benchmarks/textbook.py``) at 1.0 and 0.5 on the same batches; peak memory per row on CUDA;
2. **batch**: our small GRU at ratio 1.0, tokens/s for batch sizes 32 … 1024;
3. **length**: time per target token for fixed source = target lengths (10 … 80); it stays flat when the cost
   grows linearly with the length;
4. **epoch**: one Multi30k training epoch through ``lightning.Trainer.fit`` (data loading included) against a
   bare loop over the same DataLoader, both built from ``conf/train.yaml`` as ``src/train.py`` builds them.

The batches of tables 1-2 are synthetic but Multi30k-like: the source/target lengths are those of the Multi30k
train pairs (words and punctuation of ``data/multi30k/train.{de,en}.gz``, plus ``<eos>``/``<sos>``), grouped
into batches by our `BucketBatchSampler`; token ids are uniform over 8000 source / 6000 target words (about
Multi30k's word vocabularies). The textbook model gets the same padded batches and ignores the lengths.

    python benchmarks/training.py                     # CPU: small size, gru and lstm, attention none and bahdanau
    python benchmarks/training.py --device cuda       # GPU: both sizes, bf16 rows too

This file is the benchmark (its batches, the interleaved timing, the four sections and the command); the rows'
models and training step are in ``training_models.py``, the tables printed in ``training_report.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import os
import re
import resource
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ["PROJECT_ROOT"] = str(ROOT)  # the repository, whatever the shell says (as the entry points)

from training_models import (  # noqa: E402
    CLIP_NORM,
    LR,
    SIZES,
    SRC_VOCAB,
    TGT_VOCAB,
    VARIANTS,
    Size,
    Trainee,
    Variant,
    build_ours,
    build_textbook,
)
from training_report import (  # noqa: E402
    format_batch_scaling,
    format_epoch,
    format_grid,
    format_length_scaling,
    hardware,
    targets,
)

from seq2seq.data.batching import Batch, pad_sequences  # noqa: E402
from seq2seq.data.samplers import BucketBatchSampler  # noqa: E402
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID  # noqa: E402

MULTI30K = ROOT / "data" / "multi30k"
FIRST_WORD_ID = 4  # the ids below are <pad> <unk> <sos> <eos>


# --- batches ---------------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]")  # a word or one punctuation mark, as the word tokenizer splits them


@lru_cache(maxsize=1)
def multi30k_lengths(max_length: int = 64) -> tuple[tuple[int, int], ...]:
    """(source, target) lengths of the Multi30k de→en train pairs as the model sees them.

    Words and punctuation marks, + ``<eos>`` on the source, + ``<sos>``/``<eos>`` on the target (the length of
    tgt_in and tgt_out); pairs with more than ``max_length`` tokens on a side are dropped, as
    ``conf/data/multi30k.yaml`` drops them.
    """
    sides = []
    for lang in ("de", "en"):
        with gzip.open(MULTI30K / f"train.{lang}.gz", "rt", encoding="utf-8") as lines:
            sides.append([len(_WORD.findall(line)) for line in lines])
    return tuple((s + 1, t + 1) for s, t in zip(*sides) if s <= max_length and t <= max_length)


def random_batch(
    src_lengths: list[int], tgt_lengths: list[int], src_vocab: int, tgt_vocab: int, generator: torch.Generator
) -> Batch:
    """A padded batch of random word ids with these lengths (``<eos>``, ``<sos>`` included)."""
    src = [torch.randint(FIRST_WORD_ID, src_vocab, (n - 1,), generator=generator).tolist() for n in src_lengths]
    tgt = [torch.randint(FIRST_WORD_ID, tgt_vocab, (n - 1,), generator=generator).tolist() for n in tgt_lengths]
    src_ids, lengths = pad_sequences([[*words, EOS_ID] for words in src], PAD_ID)  # (B, S), (B,)
    tgt_in, _ = pad_sequences([[SOS_ID, *words] for words in tgt], PAD_ID)  # (B, T)
    tgt_out, _ = pad_sequences([[*words, EOS_ID] for words in tgt], PAD_ID)  # (B, T)
    return Batch(src_ids, lengths, tgt_in, tgt_out, src_text=[], tgt_text=[])


def multi30k_batches(
    batch_size: int, count: int, src_vocab: int, tgt_vocab: int, device: torch.device, seed: int = 0
) -> list[Batch]:
    """``count`` full batches of Multi30k-like lengths, bucketed as `BucketBatchSampler` buckets training data."""
    lengths = multi30k_lengths()
    sampler = BucketBatchSampler([s + t for s, t in lengths], batch_size, shuffle=True, seed=seed)
    full = [indices for indices in sampler if len(indices) == batch_size]
    if not full:
        raise ValueError(f"batch size {batch_size} is larger than Multi30k ({len(lengths)} pairs)")
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(count):
        indices = full[i % len(full)]
        src_lengths, tgt_lengths = [lengths[j][0] for j in indices], [lengths[j][1] for j in indices]
        batches.append(random_batch(src_lengths, tgt_lengths, src_vocab, tgt_vocab, generator).to(device))
    return batches


def fixed_length_batches(
    length: int, batch_size: int, count: int, src_vocab: int, tgt_vocab: int, device: torch.device, seed: int = 0
) -> list[Batch]:
    """``count`` batches whose sources and targets all have ``length`` tokens (no padding)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = [length] * batch_size
    return [random_batch(lengths, lengths, src_vocab, tgt_vocab, generator).to(device) for _ in range(count)]


def target_tokens(batches: list[Batch]) -> int:
    """The target tokens the loss is computed over (non-pad ``tgt_out``)."""
    return sum(int((batch.tgt_out != PAD_ID).sum()) for batch in batches)


# --- interleaved timing ------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One timed row: a trainee and the batches one timed run trains on."""

    name: str
    trainee: Trainee
    batches: list[Batch]
    tokens: int
    times: list[float] = field(default_factory=list)
    peak_bytes: int | None = None  # CUDA: the job's own peak (its weights, gradients, Adam state, activations)

    def run(self) -> None:
        """One training step per batch."""
        for batch in self.batches:
            self.trainee.step(batch)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.trainee.parameters)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        """Target tokens per second (median run)."""
        return self.tokens / self.median

    @property
    def memory(self) -> str:
        return "n/a" if self.peak_bytes is None else f"{self.peak_bytes / 2**30:.2f} GiB"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare(name: str, build: Callable[[], Trainee], batches: list[Batch], warmup: int, device: torch.device) -> Job:
    """Build a job and warm it up with ``warmup`` untimed runs; on CUDA, measure its peak memory meanwhile.

    A warm-up run trains on every batch once, so every shape has been seen (oneDNN and cuDNN set up, and
    ``torch.compile`` compiles, per shape) before the clock starts. Jobs are built one after another, so the
    memory allocated before ``build`` is the other jobs' and is subtracted: the peak is this job's own (weights,
    gradients, Adam state, activations), the longest batch's.
    """
    base = 0
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    job = Job(name, build(), batches, tokens=target_tokens(batches))
    for _ in range(max(1, warmup) if device.type == "cuda" else warmup):
        job.run()
    if device.type == "cuda":
        synchronize(device)
        job.peak_bytes = torch.cuda.max_memory_allocated(device) - base
    return job


def _free(device: torch.device) -> None:
    """Give back what a failed job left allocated."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_interleaved(jobs: list[Job], repeats: int, device: torch.device) -> None:
    """Every job runs once per round, the order reversed every other round; times go into ``job.times``."""
    for round_ in range(repeats):
        order = list(range(len(jobs)))
        if round_ % 2:
            order.reverse()  # so that no job always runs right after the same other one
        for i in order:
            synchronize(device)
            start = time.perf_counter()
            jobs[i].run()
            synchronize(device)
            jobs[i].times.append(time.perf_counter() - start)


# --- 1. the grid -------------------------------------------------------------------------------------------------


@dataclass
class GridRow:
    """One variant of our model against the textbook model at the same ratio, in one configuration."""

    cell: str
    attention: str
    size: str
    variant: str
    ours: Job | None  # None: the variant could not run (``note`` says why)
    textbook: Job
    note: str = ""

    @property
    def speedup(self) -> float | None:
        return self.ours.rate / self.textbook.rate if self.ours else None

    @property
    def label(self) -> str:
        """The variant, with ``fused``/``stepped`` at ratio 1 (whether the decoder runs as one RNN call)."""
        variant = VARIANTS[self.variant]
        if self.ours is None or variant.tf_ratio < 1 or variant.compile:
            return variant.label
        decoder = getattr(self.ours.trainee.model, "decoder", None)
        return f"{variant.label} {'fused' if getattr(decoder, 'fused', True) else 'stepped'}"


def run_configuration(
    cell: str,
    attention: str,
    size_name: str,
    variants: list[str],
    batches: list[Batch],
    warmup: int,
    repeats: int,
    device: torch.device,
    size_table: dict[str, Size] = SIZES,
    **model_args: Any,
) -> list[GridRow]:
    """Our variants and the textbook model at each of their ratios, interleaved on the same batches."""
    size = size_table[size_name]
    jobs: list[Job] = []
    ours: dict[str, Job | str] = {}
    for name in variants:
        variant = VARIANTS[name]
        build = partial(build_ours, cell, attention, size, variant, device=device, **model_args)
        try:
            ours[name] = prepare(f"ours {variant.label}", build, batches, warmup, device)
            jobs.append(ours[name])
        except torch.OutOfMemoryError:
            ours[name] = "OUT OF MEMORY"
            _free(device)
        except Exception as error:  # e.g. an option this version of the model lacks, or torch.compile failing
            ours[name] = f"not run: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            _free(device)
    textbook: dict[float, Job] = {}
    for ratio in sorted({VARIANTS[name].tf_ratio for name in variants}, reverse=True):
        build = partial(build_textbook, cell, attention, size, ratio, device=device, **model_args)
        textbook[ratio] = prepare(f"textbook tf {ratio}", build, batches, warmup, device)
        jobs.append(textbook[ratio])
    time_interleaved(jobs, repeats, device)
    rows = []
    for name in variants:
        job = ours[name]
        ran = isinstance(job, Job)
        tb = textbook[VARIANTS[name].tf_ratio]
        rows.append(GridRow(cell, attention, size_name, name, job if ran else None, tb, "" if ran else job))
    return rows


def run_grid(
    device: torch.device,
    cells: list[str],
    attentions: list[str],
    sizes: list[str],
    variants: list[str],
    batch_size: int,
    steps: int,
    warmup: int,
    repeats: int,
    size_table: dict[str, Size] = SIZES,
    log: Callable[[str], None] = print,
    **model_args: Any,
) -> list[GridRow]:
    """`run_configuration` for every cell × attention × size, on the same ``steps`` Multi30k-like batches.

    ``model_args``: ``src_vocab``, ``tgt_vocab``, ``dropout``, ``seed`` (see `build_ours`).
    """
    vocab = {k: model_args[k] for k in ("src_vocab", "tgt_vocab") if k in model_args}
    batches = multi30k_batches(
        batch_size, steps, vocab.get("src_vocab", SRC_VOCAB), vocab.get("tgt_vocab", TGT_VOCAB), device
    )
    rows = []
    for cell in cells:
        for attention in attentions:
            for size_name in sizes:
                start = time.perf_counter()
                rows += run_configuration(
                    cell, attention, size_name, variants, batches, warmup, repeats, device, size_table, **model_args
                )
                if device.type == "cuda":
                    torch.cuda.empty_cache()  # the configuration's models are gone
                log(f"  {cell} / {attention} / {size_name}: {time.perf_counter() - start:.0f} s")
    return rows


# --- 2. batch size, 3. length ------------------------------------------------------------------------------------


def run_batch_scaling(
    device: torch.device,
    batch_sizes: list[int],
    steps: int,
    warmup: int,
    repeats: int,
    size: Size = SIZES["small"],
    **model_args: Any,
) -> list[tuple[int, Job]]:
    """Our GRU at ratio 1.0 per batch size; a run covers about ``steps`` × 128 sentences at every size."""
    vocab = {k: model_args[k] for k in ("src_vocab", "tgt_vocab") if k in model_args}
    jobs = []
    for batch_size in batch_sizes:
        count = max(1, round(steps * 128 / batch_size))
        batches = multi30k_batches(
            batch_size, count, vocab.get("src_vocab", SRC_VOCAB), vocab.get("tgt_vocab", TGT_VOCAB), device
        )
        build = partial(build_ours, "gru", "none", size, VARIANTS["tf1"], device=device, **model_args)
        jobs.append(prepare(f"batch {batch_size}", build, batches, warmup, device))
    time_interleaved(jobs, repeats, device)
    return list(zip(batch_sizes, jobs))


def run_length_scaling(
    device: torch.device,
    lengths: list[int],
    models: list[str],
    batch_size: int,
    steps: int,
    warmup: int,
    repeats: int,
    size: Size = SIZES["small"],
    **model_args: Any,
) -> list[tuple[str, int, Job]]:
    """Fixed source = target lengths, GRU without attention; ``models``: variant names or ``textbook`` (tf 1.0).

    A run covers about ``steps`` × 20 target positions per sentence at every length.
    """
    vocab = {k: model_args[k] for k in ("src_vocab", "tgt_vocab") if k in model_args}
    jobs, keys = [], []
    for name in models:
        for length in lengths:
            count = max(1, round(steps * 20 / length))
            batches = fixed_length_batches(
                length, batch_size, count, vocab.get("src_vocab", SRC_VOCAB), vocab.get("tgt_vocab", TGT_VOCAB), device
            )
            if name == "textbook":
                build = partial(build_textbook, "gru", "none", size, 1.0, device=device, **model_args)
            else:
                build = partial(build_ours, "gru", "none", size, VARIANTS[name], device=device, **model_args)
            jobs.append(prepare(f"{name} length {length}", build, batches, warmup, device))
            keys.append((name, length))
    time_interleaved(jobs, repeats, device)
    return [(name, length, job) for (name, length), job in zip(keys, jobs)]


# --- 4. Lightning against a bare loop ------------------------------------------------------------------------------


@dataclass
class EpochResult:
    """Times of the bare loop and of ``Trainer.fit`` over the same batches, one per round."""

    batches: int
    tokens: int
    bare: list[float] = field(default_factory=list)
    fit: list[float] = field(default_factory=list)  # the whole Trainer.fit call
    loop: list[float] = field(default_factory=list)  # Trainer.fit from the first batch to the epoch's end

    @property
    def overhead(self) -> float:
        """Lightning's extra time as a share of its epoch time (the whole ``Trainer.fit`` call)."""
        return 1 - statistics.median(self.bare) / statistics.median(self.fit)


def compose_train_config(overrides: list[str]):
    """``conf/train.yaml`` with ``overrides``, composed outside a Hydra run."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train.yaml", overrides=overrides)


def epoch_clock(device: torch.device):
    """A Lightning callback noting when the first batch starts and when the epoch ends (synchronized)."""
    from lightning.pytorch.callbacks import Callback

    class EpochClock(Callback):
        def __init__(self) -> None:
            self.first_batch: float | None = None
            self.epoch_end: float | None = None

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if self.first_batch is None:
                self.first_batch = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            synchronize(device)
            self.epoch_end = time.perf_counter()

    return EpochClock()


def run_epoch(
    device: torch.device, overrides: list[str], epoch_batches: int, repeats: int, seed: int = 0
) -> EpochResult:
    """One training epoch through ``Trainer.fit`` against a bare loop over the same DataLoader.

    The datamodule and the module are built from ``conf/train.yaml`` + ``overrides`` as ``src/train.py`` builds
    them; the Trainer is the config's, with validation, checkpointing, logging, the model summary and the progress
    bar off. The bare loop does what the Trainer does per batch: move it to the device, the module's
    ``training_step`` (forward and loss, with the module's teacher forcing), backward, gradient clipping (the
    config's), optimizer step. ``epoch_batches`` caps the epoch (0: all batches).
    """
    from hydra.utils import instantiate

    from seq2seq.build import build_module

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "seq2seq"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*self.log.*")
    with tempfile.TemporaryDirectory() as tmp:
        accelerator = "gpu" if device.type == "cuda" else "cpu"
        cfg = compose_train_config([f"trainer={accelerator}", f"paths.output_dir={tmp}", *overrides])
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        tokenizers = datamodule.tokenizers_state()
        precision = str(cfg.trainer.precision)
        if precision not in ("32-true", "32", "bf16-mixed"):
            raise ValueError(f"trainer.precision={precision}: the bare loop knows 32-true and bf16-mixed")
        clip = cfg.trainer.get("gradient_clip_val")

        def new_module():
            torch.manual_seed(seed)
            return build_module(cfg, tokenizers, config={})

        loader = datamodule.train_dataloader()
        limit = min(epoch_batches, len(loader)) if epoch_batches else len(loader)
        result = EpochResult(limit, sum(int((b.tgt_out != PAD_ID).sum()) for _, b in zip(range(limit), loader)))

        def bare(batches: int) -> float:
            module = new_module().to(device).train()
            optimizer = module.configure_optimizers()["optimizer"]
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16-mixed" else None
            synchronize(device)
            start = time.perf_counter()
            for step, batch in zip(range(batches), datamodule.train_dataloader()):
                batch = batch.to(device)
                with autocast or contextlib.nullcontext():
                    loss = module.training_step(batch, step)  # without a Trainer, its self.log does nothing
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            synchronize(device)
            return time.perf_counter() - start

        def fit() -> tuple[float, float]:
            module = new_module()
            clock = epoch_clock(device)
            trainer = instantiate(
                cfg.trainer,
                callbacks=[clock],
                logger=False,
                max_epochs=1,
                min_epochs=1,
                limit_train_batches=limit if epoch_batches else 1.0,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            synchronize(device)
            start = time.perf_counter()
            trainer.fit(module, datamodule=datamodule)
            synchronize(device)
            return time.perf_counter() - start, clock.epoch_end - clock.first_batch

        bare(min(5, limit))  # warm-up: kernels, the allocator, the dataset's pages
        for round_ in range(repeats):
            for method in ("bare", "fit") if round_ % 2 == 0 else ("fit", "bare"):
                if method == "bare":
                    result.bare.append(bare(limit))
                else:
                    whole, loop = fit()
                    result.fit.append(whole)
                    result.loop.append(loop)
    return result


# --- the command ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sections = ["grid", "batch", "length", "epoch"]
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sections", nargs="+", choices=sections, default=sections, help="the tables to measure")
    parser.add_argument("--cells", nargs="+", choices=["gru", "lstm"], default=["gru", "lstm"])
    parser.add_argument("--attention", nargs="+", choices=["none", "bahdanau"], default=["none", "bahdanau"])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help="default: small on CPU, both on CUDA")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="our rows; default: tf1 exact parallel (+ bf16 on CUDA)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, help="training steps per timed run (default: 4 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per row before the timed rounds")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; every row runs once per round")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64, 128, 256, 512, 1024])
    parser.add_argument("--lengths", nargs="+", type=int, default=[10, 20, 40, 80])
    parser.add_argument(
        "--length-models",
        nargs="+",
        choices=[*VARIANTS, "textbook"],
        help="rows of the length table (default: tf1 on CPU; tf1 exact textbook on CUDA)",
    )
    parser.add_argument("--epoch-batches", type=int, default=0, help="cap the epoch at N batches (0: all)")
    parser.add_argument("--epoch-repeats", type=int, default=1, help="rounds of the epoch table")
    parser.add_argument(
        "--epoch-overrides", nargs="*", default=[], help="Hydra overrides of conf/train.yaml for the epoch table"
    )
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.sizes = args.sizes or (list(SIZES) if cuda else ["small"])
    args.variants = args.variants or ["tf1", "exact", "parallel", *(["bf16"] if cuda else [])]
    args.length_models = args.length_models or (["tf1", "exact", "textbook"] if cuda else ["tf1"])
    args.steps = args.steps or (20 if cuda else 4)
    if not cuda and any(VARIANTS[v].bf16 for v in [*args.variants, *set(args.length_models) - {"textbook"}]):
        parser.error("bf16 rows need --device cuda")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no GPU")
    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else argv
    print(f"command: {shlex.join([Path(sys.executable).name, 'benchmarks/training.py', *argv])}")
    print(hardware(device))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lengths = multi30k_lengths()
    print(
        f"Multi30k-like lengths: {len(lengths)} pairs, mean source {statistics.mean(s for s, _ in lengths):.1f}, "
        f"target {statistics.mean(t for _, t in lengths):.1f} tokens (<eos>/<sos> included); vocabularies "
        f"{SRC_VOCAB}/{TGT_VOCAB}; Adam lr {LR}, gradient clipping {CLIP_NORM}, dropout {args.dropout}"
    )
    model_args = {"dropout": args.dropout, "seed": args.seed}
    steps, warmup, repeats = args.steps, args.warmup, args.repeats
    rows: list[GridRow] = []
    epoch = None
    if "grid" in args.sections:
        print("\ngrid:")
        rows = run_grid(
            device, args.cells, args.attention, args.sizes, args.variants, args.batch_size, steps, warmup, repeats,
            **model_args,
        )  # fmt: skip
        print(
            f"\n### Training throughput, batch {args.batch_size} (Multi30k-like lengths), {steps} steps per run, "
            f"median of {repeats} interleaved rounds\n"
        )
        print(format_grid(rows))
    if "batch" in args.sections:
        result = run_batch_scaling(device, args.batch_sizes, steps, warmup, repeats, **model_args)
        print(f"\n### Batch size (ours, small gru, tf 1.0), median of {repeats} interleaved rounds\n")
        print(format_batch_scaling(result))
    if "length" in args.sections:
        result = run_length_scaling(
            device, args.lengths, args.length_models, args.batch_size, steps, warmup, repeats, **model_args
        )
        print(
            f"\n### Sequence length (small gru, batch {args.batch_size}, source = target length, no padding), "
            f"median of {repeats} interleaved rounds\n"
        )
        print(format_length_scaling(result))
    if "epoch" in args.sections:
        epoch = run_epoch(device, args.epoch_overrides, args.epoch_batches, args.epoch_repeats, seed=args.seed)
        model = " ".join(args.epoch_overrides) or "conf/train.yaml as is: gru, embeddings 256, hidden 256"
        print(
            f"\n### One Multi30k epoch: Lightning against a bare loop ({epoch.batches} batches, {epoch.tokens:,} "
            f"target tokens; {model}; median of {args.epoch_repeats})\n"
        )
        print(format_epoch(epoch))
    print(f"\ntargets ({args.device}, batch {args.batch_size}):")
    for line in targets(rows, device, epoch):
        print(f"  {line}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    print(f"\nprocess peak RSS (CPU memory, all rows together): {rss:.2f} GiB")
    print(f"total time: {time.perf_counter() - started:.0f} s")


__all__ = [  # what the tests reach through this module, besides its own functions
    "Batch",
    "Size",
    "Variant",
    "VARIANTS",
    "build_ours",
    "build_textbook",
    "format_batch_scaling",
    "format_epoch",
    "format_grid",
    "format_length_scaling",
    "targets",
]

if __name__ == "__main__":
    main()
