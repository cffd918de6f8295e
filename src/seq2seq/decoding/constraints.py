"""What may not come next: constraints on each step's log-probabilities, one list that every search applies.

Each constraint sets the log-probability of the tokens it forbids to -inf; a search applies its list in order to
every step's log-probabilities (N, V), one row per live hypothesis (a sentence for greedy and sampling, a
sentence's beam for beam search), before it chooses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class DecodingStep:
    """Where the search is at step ``t`` (0-based), for the constraints.

    Attributes:
        t: the step; the token chosen now is the ``t + 1``-th of its hypothesis.
        eos_id: the end-of-sentence token.
        shortest_limit: the smallest length limit in the batch (a host int: no sync to know none is reached).
        limits: each row's length limit (N,), built on demand.
        history: each row's tokens so far (N, t), built on demand.
    """

    t: int
    eos_id: int
    shortest_limit: int
    limits: Callable[[], torch.Tensor]
    history: Callable[[], torch.Tensor]


class Constraint(Protocol):
    """A rule on the next token: the log-probabilities (N, V) with what it forbids at -inf."""

    def __call__(self, log_probs: torch.Tensor, step: DecodingStep) -> torch.Tensor: ...


@dataclass(frozen=True)
class MinLength:
    """``<eos>`` is not allowed before ``min_length`` tokens (``<eos>`` included), but at a hypothesis's length
    limit, which wins."""

    min_length: int

    def __call__(self, log_probs: torch.Tensor, step: DecodingStep) -> torch.Tensor:
        if step.t + 1 >= self.min_length:
            return log_probs
        if step.t + 1 < step.shortest_limit:  # no row at its limit (known on the host)
            log_probs[:, step.eos_id] = float("-inf")
        else:
            at_limit = step.limits() <= step.t + 1  # (N,)
            log_probs[:, step.eos_id] = log_probs[:, step.eos_id].masked_fill(~at_limit, float("-inf"))
        return log_probs


def banned_ngram_tokens(history: torch.Tensor, n: int, vocab_size: int) -> torch.Tensor:
    """Tokens that would repeat an n-gram already in each row of ``history`` (N, t): a mask (N, V)."""
    banned = torch.zeros(history.size(0), vocab_size, device=history.device)
    if n < 1 or history.size(1) < n - 1 or (n > 1 and history.size(1) < n):
        return banned.bool()
    if n == 1:
        return banned.scatter_(1, history, 1.0).bool()
    ngrams = history.unfold(1, n, 1)  # (N, t - n + 1, n)
    prefix = history[:, history.size(1) - n + 1 :]  # (N, n - 1): the last n - 1 tokens
    matches = (ngrams[:, :, :-1] == prefix[:, None, :]).all(-1)  # (N, t - n + 1)
    return banned.scatter_add_(1, ngrams[:, :, -1], matches.float()).bool()


@dataclass(frozen=True)
class NoRepeatNgram:
    """No n-gram of ``size`` tokens may appear twice in a hypothesis. Ending is never a repeat: ``<eos>`` stays
    allowed (a live hypothesis holds no ``<eos>``; a finished one, padded, must be able to end at its limit)."""

    size: int

    def __call__(self, log_probs: torch.Tensor, step: DecodingStep) -> torch.Tensor:
        banned = banned_ngram_tokens(step.history(), self.size, log_probs.size(-1))  # (N, V)
        banned[:, step.eos_id] = False
        return log_probs.masked_fill(banned, float("-inf"))


@dataclass(frozen=True)
class MaxLength:
    """At its length limit (see `seq2seq.decoding.hypotheses.max_decode_lengths`) a hypothesis may only end."""

    def __call__(self, log_probs: torch.Tensor, step: DecodingStep) -> torch.Tensor:
        if step.t + 1 < step.shortest_limit:  # checked on the host: no sync, no pass while no row is at its limit
            return log_probs
        at_limit = step.limits() <= step.t + 1  # (N,)
        eos_log_probs = log_probs[:, step.eos_id]  # masked_fill below makes a new tensor
        log_probs = log_probs.masked_fill(at_limit[:, None], float("-inf"))
        log_probs[:, step.eos_id] = eos_log_probs
        return log_probs


def length_constraints(min_length: int = 0, no_repeat_ngram_size: int = 0) -> list[Constraint]:
    """The constraints of a search's settings (0 = off), in the order they apply; the length limit comes last."""
    constraints: list[Constraint] = []
    if min_length:
        constraints.append(MinLength(min_length))
    if no_repeat_ngram_size:
        constraints.append(NoRepeatNgram(no_repeat_ngram_size))
    return [*constraints, MaxLength()]


def apply_constraints(constraints: Sequence[Constraint], log_probs: torch.Tensor, step: DecodingStep) -> torch.Tensor:
    """``log_probs`` (N, V) with every constraint applied, in order."""
    for constraint in constraints:
        log_probs = constraint(log_probs, step)
    return log_probs
