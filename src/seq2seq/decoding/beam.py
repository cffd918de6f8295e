"""Batched beam search over sentences × beams, with GNMT length penalty and n-best lists.

Apart, as in fairseq: the search policy (`select_candidates`, top-k over beams × vocabulary), the hypotheses
(`BeamSearch` extends, finishes and continues them), the model's state (reordered after each step) and the loop
(`BeamSearch.search`), which also retires done sentences from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

import torch

from seq2seq.decoding.constraints import DecodingStep, apply_constraints, length_constraints
from seq2seq.decoding.early_stop import EarlyStop
from seq2seq.decoding.hypotheses import Hypotheses, check_interval, max_decode_lengths
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq


def length_penalty(length: torch.Tensor | float, alpha: float) -> torch.Tensor | float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``; 1 when ``alpha`` is 0."""
    return ((5.0 + length) / 6.0) ** alpha


def select_candidates(
    log_probs: torch.Tensor, beam_scores: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The search policy: each sentence's ``n`` best continuations over its beams × vocabulary.

    Args:
        log_probs: next-token log-probabilities of every beam (B·K, V).
        beam_scores: summed log-probabilities of the beams (B, K).
        n: continuations kept per sentence (at most K·V).

    Returns:
        Their summed log-probabilities, the beams they continue and their tokens, each (B, n), best first.
    """
    batch = beam_scores.size(0)
    # The best continuations of each beam first (a global top-n is always among its row's top n),
    # so the scores are only added for those: (B·K, n) instead of (B·K, V).
    row_log_probs, row_tokens = log_probs.topk(min(n, log_probs.size(-1)), dim=-1)  # (B·K, n)
    row_scores = (row_log_probs + beam_scores.view(-1, 1)).view(batch, -1)  # (B, K·n)
    scores, index = row_scores.topk(n, dim=-1)  # (B, n)
    return scores, index // row_tokens.size(1), row_tokens.view(batch, -1).gather(1, index)


def take(hypotheses: Hypotheses, index: torch.Tensor, scores: torch.Tensor) -> Hypotheses:
    """Of each sentence's hypotheses (B, K, …), those at ``index`` (B, n), with their new ``scores`` (B, n)."""
    attention = hypotheses.attention
    return Hypotheses(
        hypotheses.tokens.take_along_dim(index[:, :, None], dim=1),  # (B, n, L)
        scores,
        None if attention is None else attention.take_along_dim(index[:, :, None, None], dim=1),  # (B, n, L, S)
    )


def concat(first: Hypotheses, second: Hypotheses) -> Hypotheses:
    """Both sets of hypotheses of each sentence: (B, n + m, …)."""
    attention = None if first.attention is None else torch.cat([first.attention, second.attention], dim=1)
    return Hypotheses(
        torch.cat([first.tokens, second.tokens], dim=1), torch.cat([first.scores, second.scores], dim=1), attention
    )


@dataclass
class Beams:
    """The search over the sentences still in the batch (B of them), apart from the model's state."""

    sentence_ids: torch.Tensor  # (B,): each sentence's position in the input batch
    limits: torch.Tensor  # (B,): its length limit
    live: Hypotheses  # (B, K, L) tokens so far, (B, K) summed log-probabilities, (B, K, L, S) attention
    finished: Hypotheses  # (B, nbest, L), (B, nbest) length-penalized scores, best first, (B, nbest, L, S)

    def select(self, index: torch.Tensor) -> Beams:
        """The sentences at ``index`` (B',)."""
        pick = itemgetter(index)  # tensor -> tensor[index]
        return Beams(pick(self.sentence_ids), pick(self.limits), self.live.map(pick), self.finished.map(pick))


class BeamSearch:
    """Beam search batched over sentences × beams (``decoding=beam``).

    At each step the ``2 × beam_size`` best continuations are kept, so that hypotheses ending in
    ``<eos>`` (set aside among the top ``beam_size``) never starve the beam. A sentence is done
    when it has ``nbest`` finished hypotheses that no live one can beat, or at its length limit.

    Args:
        beam_size: live hypotheses per sentence.
        length_penalty: GNMT alpha; finished scores are ``log p / ((5 + len) / 6) ** alpha``.
        nbest: finished hypotheses returned per sentence, best first.
        max_length: most tokens per hypothesis, ``<eos>`` included.
        max_length_ratio: if set, at most ``ratio × source length + 5`` tokens.
        min_length: ``<eos>`` is not allowed before this many tokens (``<eos>`` included).
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0 = off).
    """

    check_every: int | None = None  # steps between two looks at which sentences are done; None: `check_interval`

    def __init__(
        self,
        beam_size: int = 5,
        length_penalty: float = 0.0,
        nbest: int = 1,
        max_length: int = 100,
        max_length_ratio: float | None = None,
        min_length: int = 0,
        no_repeat_ngram_size: int = 0,
    ) -> None:
        if beam_size < 1:
            raise ConfigError(f"decoding.beam_size must be >= 1, got {beam_size}")
        if not 1 <= nbest <= beam_size:
            raise ConfigError(f"decoding.nbest must be between 1 and decoding.beam_size ({beam_size}), got {nbest}")
        if max_length < 1:
            raise ConfigError(f"decoding.max_length must be >= 1, got {max_length}")
        if min_length < 0 or no_repeat_ngram_size < 0 or length_penalty < 0:
            raise ConfigError("decoding.min_length, no_repeat_ngram_size and length_penalty must be >= 0")
        self.beam_size = beam_size
        self.alpha = length_penalty
        self.nbest = nbest
        self.max_length = max_length
        self.max_length_ratio = max_length_ratio
        self.min_length = min_length
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.constraints = length_constraints(min_length, no_repeat_ngram_size)

    @torch.no_grad()
    def search(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Return the n-best lists: tokens (B, nbest, L), scores (B, nbest), best first, and for an attentional
        model the attention weights (B, nbest, L, S)."""
        batch, beam, device = src.size(0), self.beam_size, src.device
        limits = max_decode_lengths(src_lengths, self.max_length, self.max_length_ratio).to(device)
        max_steps, shortest_limit = torch.stack((limits.max(), limits.min())).tolist()
        encoded = model.encode(src, src_lengths).index_select(
            torch.arange(batch, device=device).repeat_interleave(beam)
        )
        state = encoded.state
        tokens = torch.full((batch * beam,), sos_id, dtype=torch.long, device=device)  # (B·K,)
        beams = self.start(limits, max_steps, pad_id, encoded.memory if model.has_attention else None, src.size(1))
        # Done sentences leave the batch; their n-best lists are collected here, by input position.
        out = beams.finished.map(torch.clone)
        early_stop = EarlyStop(max_steps, check_interval(device, self.check_every), device)
        for t in range(max_steps):
            logits, state, weights = model.decode_step(tokens, state, encoded)  # (B·K, V), …, (B·K, S)
            # One fused pass; on CPU it is about twice as fast as a separate logsumexp normalizer.
            log_probs = self.constrain(logits.float().log_softmax(-1), t, beams, shortest_limit, eos_id)  # (B·K, V)
            beams, tokens, rows = self.step(beams, log_probs, weights, t, eos_id)
            state = state.index_select(rows)
            done = self.done(beams)  # (B,)
            early_stop.record(done)
            if early_stop.due(t):
                (n_done,) = early_stop.look(t, done.sum())
                if early_stop.stopped:  # the steps since the last sentence was done changed no n-best list
                    break
                # A done sentence stays done (live scores only fall), so it can wait until a quarter of the batch
                # is done; then the done ones leave, and every later step costs less.
                if n_done * 4 >= done.numel():
                    beams, rows = self.retire(beams, done, n_done, out)
                    tokens, state, encoded = tokens[rows], state.index_select(rows), encoded.index_select(rows)
        self.store(out, beams)
        length = early_stop.length
        return Hypotheses(
            out.tokens[:, :, :length], out.scores, None if out.attention is None else out.attention[:, :, :length]
        )

    def start(
        self, limits: torch.Tensor, max_steps: int, pad_id: int, memory: torch.Tensor | None, source_length: int
    ) -> Beams:
        """The search before the first step: only the first beam of each sentence is alive (the others would
        duplicate it) and nothing is finished; with attention weights (``memory``'s dtype) when given a memory."""
        batch, beam, nbest, device = limits.size(0), self.beam_size, self.nbest, limits.device
        live_scores = torch.full((batch, beam), float("-inf"), device=device)
        live_scores[:, 0] = 0.0

        def empty(n: int, scores: torch.Tensor) -> Hypotheses:
            tokens = torch.full((batch, n, max_steps), pad_id, dtype=torch.long, device=device)
            attention = None if memory is None else memory.new_zeros(batch, n, max_steps, source_length)
            return Hypotheses(tokens, scores, attention)

        finished = empty(nbest, torch.full((batch, nbest), float("-inf"), device=device))
        return Beams(torch.arange(batch, device=device), limits, empty(beam, live_scores), finished)

    def constrain(
        self, log_probs: torch.Tensor, t: int, beams: Beams, shortest_limit: int, eos_id: int
    ) -> torch.Tensor:
        """The step-``t`` log-probabilities (B·K, V) with what may not come next at -inf (the search's
        ``constraints``: ``<eos>`` before ``min_length``, repeated n-grams, anything but ``<eos>`` at a sentence's
        length limit)."""
        rows = log_probs.size(0)
        step = DecodingStep(
            t,
            eos_id,
            shortest_limit,
            limits=lambda: beams.limits.repeat_interleave(self.beam_size),  # (B·K,)
            history=lambda: beams.live.tokens[:, :, :t].reshape(rows, t),  # (B·K, t)
        )
        return apply_constraints(self.constraints, log_probs, step)

    def step(
        self, beams: Beams, log_probs: torch.Tensor, weights: torch.Tensor | None, t: int, eos_id: int
    ) -> tuple[Beams, torch.Tensor, torch.Tensor]:
        """Step ``t`` of the search, given the next-token ``log_probs`` (B·K, V) and attention ``weights``
        (B·K, S) of the live hypotheses: the new beams, their last tokens (B·K,) and the rows of the model state
        they continue (B·K,)."""
        n = min(2 * self.beam_size, self.beam_size * log_probs.size(-1))
        scores, sources, tokens = select_candidates(log_probs, beams.live.scores, n)  # (B, 2K)
        candidates = self.extend(beams.live, scores, sources, tokens, weights, t)  # (B, 2K, L)
        is_eos = (tokens == eos_id) & torch.isfinite(scores)
        finished = self.finish(beams.finished, candidates, is_eos, t)  # (B, nbest, L)
        live, kept = self.continue_(candidates, is_eos)  # (B, K, L), (B, K)
        beams = Beams(beams.sentence_ids, beams.limits, live, finished)
        return beams, tokens.gather(1, kept).view(-1), self.beam_rows(sources.gather(1, kept))

    def extend(
        self,
        live: Hypotheses,
        scores: torch.Tensor,
        sources: torch.Tensor,
        tokens: torch.Tensor,
        weights: torch.Tensor | None,
        t: int,
    ) -> Hypotheses:
        """The candidates (B, 2K, L): the live hypotheses ``sources`` (B, 2K), with ``tokens`` (B, 2K) and their
        attention ``weights`` (B·K, S) as step ``t``, and their ``scores`` (B, 2K)."""
        candidates = take(live, sources, scores)  # new tensors
        candidates.tokens[:, :, t] = tokens
        if candidates.attention is not None:
            step_weights = weights.view(sources.size(0), self.beam_size, -1)  # (B, K, S)
            candidates.attention[:, :, t] = step_weights.take_along_dim(sources[:, :, None], dim=1)
        return candidates

    def finish(self, finished: Hypotheses, candidates: Hypotheses, is_eos: torch.Tensor, t: int) -> Hypotheses:
        """Move the candidates that end (``is_eos``, (B, 2K)) among the top K into the n-best lists, ranked by
        their length-penalized scores."""
        ending = is_eos.clone()
        ending[:, self.beam_size :] = False
        ending_scores = torch.where(ending, candidates.scores / length_penalty(t + 1.0, self.alpha), float("-inf"))
        pool = concat(finished, Hypotheses(candidates.tokens, ending_scores, candidates.attention))  # (B, nbest + 2K)
        scores, best = pool.scores.topk(self.nbest, dim=1)  # (B, nbest)
        return take(pool, best, scores)

    def continue_(self, candidates: Hypotheses, is_eos: torch.Tensor) -> tuple[Hypotheses, torch.Tensor]:
        """The K best candidates that did not end (B, K, L), and their positions among the candidates (B, K)."""
        scores, kept = candidates.scores.masked_fill(is_eos, float("-inf")).topk(self.beam_size, dim=1)
        return take(candidates, kept, scores), kept

    def done(self, beams: Beams) -> torch.Tensor:
        """Whether each sentence (B,) is done: nbest finished, and no live hypothesis can still beat the worst."""
        best_live = beams.live.scores[:, 0]
        if self.alpha:  # the most a live hypothesis could still score: at its limit, where the penalty is largest
            best_live = best_live / length_penalty(beams.limits.float(), self.alpha)
        return beams.finished.scores[:, -1] >= best_live

    def retire(self, beams: Beams, done: torch.Tensor, n_done: int, out: Hypotheses) -> tuple[Beams, torch.Tensor]:
        """Move the n-best lists of the ``n_done`` sentences ``done`` (B,) into ``out`` and drop them from the
        batch: the beams left (B' sentences) and the rows of the model state they keep (B'·K,)."""
        order = done.int().argsort(stable=True)  # the sentences left first, then the done ones, each in batch order
        left, gone = order[: done.numel() - n_done], order[done.numel() - n_done :]  # no host sync: n_done is known
        self.store(out, beams.select(gone))
        return beams.select(left), self.sentence_rows(left)

    def beam_rows(self, beams: torch.Tensor) -> torch.Tensor:
        """The model state's rows (B·K,) of each sentence's ``beams`` (B, K)."""
        sentences = torch.arange(beams.size(0), device=beams.device)[:, None]
        return (beams + sentences * self.beam_size).view(-1)

    def sentence_rows(self, sentences: torch.Tensor) -> torch.Tensor:
        """The model state's rows (B'·K,) of the beams of ``sentences`` (B',)."""
        return (sentences[:, None] * self.beam_size + torch.arange(self.beam_size, device=sentences.device)).view(-1)

    @staticmethod
    def store(out: Hypotheses, beams: Beams) -> None:
        """Write the n-best lists of ``beams``' sentences into ``out`` at their input positions."""
        out.tokens[beams.sentence_ids] = beams.finished.tokens
        out.scores[beams.sentence_ids] = beams.finished.scores
        if out.attention is not None:
            out.attention[beams.sentence_ids] = beams.finished.attention

    def __call__(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Return each sentence's best hypothesis: tokens (B, L), scores (B,) and attention (B, L, S) or None."""
        nbest = self.search(model, src, src_lengths, sos_id, eos_id, pad_id)
        return Hypotheses(
            nbest.tokens[:, 0], nbest.scores[:, 0], None if nbest.attention is None else nbest.attention[:, 0]
        )
