"""Every private member of a dependency that the package uses, one function each, and nowhere else.

Each docstring names the private API it wraps (``Private API:``), the versions ``tests/test_compat.py`` passed on
(``Tested on:``; the test pins the behaviour we rely on, so an upgrade that changes it fails there, not in a user's
run) and what to do when it breaks (``Breaks if:``, ``Fix:``). ``pyproject.toml`` caps these libraries below their
next release that may change them; ``docs/compat.md`` has the table. No other module may touch a dependency's private
members (``tests/test_compat.py`` scans ``src/`` and ``benchmarks/`` for them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import WandbLogger
    from sacrebleu.metrics.base import Metric, Score
    from torch import nn

# --- torch -------------------------------------------------------------------------------------------------------


@contextmanager
def rnn_weights_cast(rnn: nn.RNNBase, dtype: torch.dtype) -> Iterator[None]:
    """Within the block, ``rnn``'s fused forward uses its weights cast to ``dtype`` (in the autograd graph).

    Private API: ``torch.nn.RNNBase._flat_weights``, the list of weight tensors (or ``None``) that ``forward``
    hands to the fused kernel, in ``_flat_weights_names`` order. Replaced for the block, restored after it.
    Tested on: torch 2.13.0. Breaks if: ``forward`` stops reading ``_flat_weights`` (the weights would keep their
    dtype: a dtype mismatch error under autocast). Fix: call the module with cast parameters by name
    (``torch.func.functional_call``), or run the recurrence under autocast again.
    """
    flat_weights = rnn._flat_weights
    rnn._flat_weights = [None if w is None else w.to(dtype) for w in flat_weights]
    try:
        yield
    finally:
        rnn._flat_weights = flat_weights


def foreach_mul_(tensors: list[torch.Tensor], scalar: float | torch.Tensor) -> None:
    """Multiply every tensor in place by ``scalar`` (a number or a 0-d tensor), in one fused kernel launch.

    Private API: ``torch._foreach_mul_`` (what ``torch.optim``'s foreach implementations use). Tested on: torch
    2.13.0. Breaks if: it is renamed or drops the tensor scalar. Fix: ``for t in tensors: t.mul_(scalar)``.
    """
    torch._foreach_mul_(tensors, scalar)


def foreach_mul(tensors: list[torch.Tensor], scalar: float | torch.Tensor) -> list[torch.Tensor]:
    """New tensors: each of ``tensors`` times ``scalar`` (a number or a 0-d tensor).

    Private API: ``torch._foreach_mul``. Tested on: torch 2.13.0. Breaks if: renamed or the tensor scalar is
    dropped. Fix: ``[t * scalar for t in tensors]``.
    """
    return torch._foreach_mul(tensors, scalar)


def foreach_add_(tensors: list[torch.Tensor], others: list[torch.Tensor]) -> None:
    """Add ``others[i]`` to ``tensors[i]`` in place, for every i.

    Private API: ``torch._foreach_add_``. Tested on: torch 2.13.0. Breaks if: renamed.
    Fix: ``for t, o in zip(tensors, others): t.add_(o)``.
    """
    torch._foreach_add_(tensors, others)


def foreach_copy_(tensors: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """Copy ``sources[i]`` into ``tensors[i]``, for every i.

    Private API: ``torch._foreach_copy_``. Tested on: torch 2.13.0. Breaks if: renamed.
    Fix: ``for t, s in zip(tensors, sources): t.copy_(s)``.
    """
    torch._foreach_copy_(tensors, sources)


# --- Lightning: LightningModule and the fit loop -----------------------------------------------------------------


def attached_trainer(module: LightningModule) -> Trainer | None:
    """The trainer ``module`` is attached to, or ``None`` (the public ``module.trainer`` raises then).

    Private API: ``LightningModule._trainer``. Tested on: lightning 2.6.6. Breaks if: renamed (AttributeError).
    Fix: ``module.trainer`` inside ``try``/``except RuntimeError``.
    """
    return module._trainer


def will_accumulate(trainer: Trainer) -> bool:
    """Whether no optimizer step follows the current training batch (the gradient keeps accumulating).

    Called inside ``training_step``: false at the last batch of each ``accumulate_grad_batches`` window and at the
    last batch of an epoch. Private API: ``trainer.fit_loop._should_accumulate()``. Tested on: lightning 2.6.6.
    Breaks if: renamed, or it changes when it is true. Fix: compute it from the batch index within the epoch
    (``(batch_idx + 1) % accumulate_grad_batches != 0`` and not ``trainer.num_training_batches - 1``).
    """
    return trainer.fit_loop._should_accumulate()


# --- Lightning: ModelCheckpoint internals (for seq2seq.callbacks.checkpoint.BestAndLastCheckpoint) ----------------
# All six break if ModelCheckpoint's saving logic is rewritten (lightning minors have). Fix: reread ModelCheckpoint's
# on_train_batch_end / on_train_epoch_end / on_validation_end and adapt BestAndLastCheckpoint, or write last.ckpt
# with trainer.save_checkpoint(dirpath / "last.ckpt") and track the saved step there.


def checkpoint_should_skip(callback: ModelCheckpoint, trainer: Trainer) -> bool:
    """Whether ``callback`` must not save now: a fast dev run, not fitting, the sanity check, or already saved at
    this global step. Private API: ``ModelCheckpoint._should_skip_saving_checkpoint(trainer)``.
    Tested on: lightning 2.6.6. Breaks if: ModelCheckpoint's saving logic changes. Fix: see the comment above."""
    return callback._should_skip_saving_checkpoint(trainer)


def checkpoint_saves_on_train_epoch_end(callback: ModelCheckpoint, trainer: Trainer) -> bool:
    """Whether ``callback`` saves at the end of the training epoch (true) or at the end of validation (false).

    Private API: ``ModelCheckpoint._should_save_on_train_epoch_end(trainer)``: ``save_on_train_epoch_end`` if given,
    else true when there is no validation or it runs once at each epoch's end.
    Tested on: lightning 2.6.6. Breaks if: ModelCheckpoint's saving logic changes. Fix: see the comment above.
    """
    return callback._should_save_on_train_epoch_end(trainer)


def checkpoint_monitor_candidates(callback: ModelCheckpoint, trainer: Trainer) -> dict[str, torch.Tensor]:
    """The metrics a checkpoint's name and score are taken from: the trainer's callback metrics plus ``epoch`` and
    ``step``. Private API: ``ModelCheckpoint._monitor_candidates(trainer)``.
    Tested on: lightning 2.6.6. Breaks if: ModelCheckpoint's saving logic changes. Fix: see the comment above."""
    return callback._monitor_candidates(trainer)


def checkpoint_save_last(callback: ModelCheckpoint, trainer: Trainer, candidates: dict[str, torch.Tensor]) -> None:
    """Write ``last.ckpt`` (when ``save_last``) and record this global step as saved.

    Private API: ``ModelCheckpoint._save_last_checkpoint(trainer, monitor_candidates)``.
    Tested on: lightning 2.6.6. Breaks if: ModelCheckpoint's saving logic changes. Fix: see the comment above.
    """
    callback._save_last_checkpoint(trainer, candidates)


def checkpoint_last_saved_step(callback: ModelCheckpoint) -> int:
    """The global step of ``callback``'s last save (saving again at that step is skipped).

    Private API: ``ModelCheckpoint._last_global_step_saved``.
    Tested on: lightning 2.6.6. Breaks if: ModelCheckpoint's saving logic changes. Fix: see the comment above.
    """
    return callback._last_global_step_saved


def set_checkpoint_last_saved_step(callback: ModelCheckpoint, step: int) -> None:
    """Set the global step ``callback`` last saved at (an earlier one lets it save again at this step).

    Private API: ``ModelCheckpoint._last_global_step_saved``.
    Tested on: lightning 2.6.6. Breaks if: ModelCheckpoint's saving logic changes. Fix: see the comment above.
    """
    callback._last_global_step_saved = step


# --- Lightning: WandbLogger ---------------------------------------------------------------------------------------


def wandb_init_args(logger: WandbLogger) -> dict[str, Any]:
    """The keyword arguments ``logger`` will pass to ``wandb.init`` when it starts its run: the live dict, so
    changes before the first ``logger.experiment`` take effect.

    Private API: ``lightning.pytorch.loggers.WandbLogger._wandb_init``. Tested on: lightning 2.6.6.
    Breaks if: renamed, or copied before ``wandb.init``. Fix: decide the mode first and pass it, with the other
    settings, to the ``WandbLogger`` constructor; on a failed start, build a new ``WandbLogger`` offline.
    """
    return logger._wandb_init


def wandb_forget_run(logger: WandbLogger) -> None:
    """Make ``logger`` start a new W&B run (``wandb.init`` again) at its next ``logger.experiment``.

    Private API: ``WandbLogger._experiment``, the cached run (``None`` = not started). Tested on: lightning 2.6.6.
    Breaks if: renamed. Fix: build a new ``WandbLogger``.
    """
    logger._experiment = None


# --- sacreBLEU ----------------------------------------------------------------------------------------------------
# Both break if sacreBLEU changes its statistics (their number, order, or integer counts) or these two methods (its
# minors have). Fix: keep the summed-statistics design but compute BLEU/chrF from counts ourselves, or collect the
# text and call scorer.corpus_score at compute time (gathering strings across processes).


def segment_statistics(scorer: Metric, hypotheses: Sequence[str], references: Sequence[str]) -> list[list[int]]:
    """Per hypothesis, ``scorer``'s sufficient statistics (integer counts) against its one reference.

    Summed over a corpus, they give the corpus score with `score_from_statistics`. Also fixes the scorer's number
    of references (its signature's ``nrefs:1``). Private API: ``sacrebleu.metrics.base.Metric
    ._extract_corpus_statistics(hypotheses, [references])``.
    Tested on: sacreBLEU 2.6.0. Breaks if: sacreBLEU's statistics change. Fix: see the comment above.
    """
    return scorer._extract_corpus_statistics(list(hypotheses), [list(references)])


def score_from_statistics(scorer: Metric, statistics: Sequence[int]) -> Score:
    """``scorer``'s corpus score from summed `segment_statistics`: equal to ``scorer.corpus_score`` of the text.

    Private API: ``sacrebleu.metrics.base.Metric._compute_score_from_stats(stats)``.
    Tested on: sacreBLEU 2.6.0. Breaks if: sacreBLEU's statistics change. Fix: see the comment above.
    """
    return scorer._compute_score_from_stats(list(statistics))
