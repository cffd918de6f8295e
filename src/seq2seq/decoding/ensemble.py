"""Ensembles: several models that share a vocabulary decode as one, with the mean of their probabilities.

At each step every member predicts a distribution over the target vocabulary; the ensemble's is their mean,
``p(y) = 1/n Σ_i p_i(y)``, kept in the log domain as ``logsumexp_i log_softmax(z_i) - log n`` (fairseq's and
OpenNMT's ensemble: the log of the mean probability, not the mean of the log-probabilities). `Ensemble` offers
the interface the searches use (`encode`, `decode_step`, ``has_attention``), so greedy, beam and sampling
decode an ensemble unchanged; its "logits" are these normalized log-probabilities, which the searches'
``log_softmax`` leaves as they are. Sampling's temperature divides them: ``p(y) ∝ p̄(y)^(1/T)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.modules import Seq2Seq
from seq2seq.modules.state import DecoderState, Encoded


def mean_probability(log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The log of the mean of the members' probabilities, ``log(1/n Σ_i exp(log_probs_i))``, in float32.

    Args:
        log_probs: each member's normalized log-probabilities, all of one shape (…, V).
    """
    if len(log_probs) == 1:
        return log_probs[0].float()
    stacked = torch.stack([lp.float() for lp in log_probs])  # (n, …, V)
    return stacked.logsumexp(0) - math.log(len(log_probs))


@dataclass
class EnsembleState:
    """The decoder state of every member, in member order."""

    members: list[DecoderState]

    def index_select(self, index: torch.Tensor) -> EnsembleState:
        """Reorder or repeat sentences along the batch dimension (for beam search), in every member."""
        return EnsembleState([state.index_select(index) for state in self.members])


@dataclass
class EnsembleEncoded:
    """The encoded source of every member, in member order."""

    members: list[Encoded]

    @property
    def state(self) -> EnsembleState:
        """The members' initial decoder states."""
        return EnsembleState([encoded.state for encoded in self.members])

    @property
    def memory(self) -> torch.Tensor:
        """The first member's encoder outputs (B, S, H): the searches read only their batch, length and dtype."""
        return self.members[0].memory

    def index_select(self, index: torch.Tensor) -> EnsembleEncoded:
        """Reorder or repeat sentences along the batch dimension (for beam search), in every member."""
        return EnsembleEncoded([encoded.index_select(index) for encoded in self.members])


class Ensemble(nn.Module):
    """Models with one source and one target vocabulary, decoding with the mean of their probabilities.

    Members may differ in anything else (cell, depth, sizes, attention). Put it where a `Seq2Seq` goes in a search
    or in `seq2seq.lit_module.Seq2SeqModule` (``module.model``) for evaluation; it is not trained.

    Args:
        members: the models, in the order of their checkpoints.
    """

    def __init__(self, members: Sequence[Seq2Seq]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    @property
    def has_attention(self) -> bool:
        """Whether every member attends (only then does decoding return attention weights: their mean)."""
        return all(member.has_attention for member in self.members)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EnsembleEncoded:
        """Encode ``src`` (B, S) with every member."""
        return EnsembleEncoded([member.encode(src, src_lengths) for member in self.members])

    def decode_step(
        self, tokens: torch.Tensor, state: EnsembleState, encoded: EnsembleEncoded
    ) -> tuple[torch.Tensor, EnsembleState, torch.Tensor | None]:
        """One step of every member: ``tokens`` (B,) → the log of their mean probability (B, V), float32, the new
        states, and the mean attention weights (B, S), or None unless every member attends."""
        log_probs, states, weights = [], [], []
        for member, member_state, member_encoded in zip(self.members, state.members, encoded.members):
            logits, member_state, attention = member.decode_step(tokens, member_state, member_encoded)  # (B, V)
            log_probs.append(logits.float().log_softmax(-1))
            states.append(member_state)
            weights.append(attention)
        attention = torch.stack(weights).mean(0) if self.has_attention else None  # (B, S)
        return mean_probability(log_probs), EnsembleState(states), attention

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: the log of the members' mean probability (B, T, V) for the gold inputs ``tgt_in`` (B, T).

        Cross-entropy on it is the ensemble's loss (its exp the perplexity), its argmax the ensemble's token
        accuracy: the same metrics a single model gets from its logits.
        """
        return mean_probability([member(src, src_lengths, tgt_in).float().log_softmax(-1) for member in self.members])
