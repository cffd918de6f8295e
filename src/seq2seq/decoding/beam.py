"""Batched beam search over sentences × beams, with GNMT length penalty and n-best lists."""

from __future__ import annotations

import torch

from seq2seq.decoding.greedy import Hypotheses, max_decode_lengths
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq


def length_penalty(length: torch.Tensor | float, alpha: float) -> torch.Tensor | float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``; 1 when ``alpha`` is 0."""
    return ((5.0 + length) / 6.0) ** alpha


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

    @torch.no_grad()
    def search(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Return the n-best lists: tokens (B, nbest, L), scores (B, nbest), best first, and for an attentional
        model the attention weights (B, nbest, L, S)."""
        batch, beam, device = src.size(0), self.beam_size, src.device
        limits = max_decode_lengths(src_lengths, self.max_length, self.max_length_ratio).to(device)
        max_steps, shortest_limit = int(limits.max()), int(limits.min())
        encoded = model.encode(src, src_lengths).index_select(
            torch.arange(batch, device=device).repeat_interleave(beam)
        )
        state = encoded.state
        tokens = torch.full((batch * beam,), sos_id, dtype=torch.long, device=device)
        history = torch.full((batch, beam, max_steps), pad_id, dtype=torch.long, device=device)
        # Only the first beam is alive at the start: the others would duplicate it.
        beam_scores = torch.full((batch, beam), float("-inf"), device=device)
        beam_scores[:, 0] = 0.0
        finished_tokens = torch.full((batch, self.nbest, max_steps), pad_id, dtype=torch.long, device=device)
        finished_scores = torch.full((batch, self.nbest), float("-inf"), device=device)
        # Attention weights travel with the tokens: (B, K, L, S) live, (B, nbest, L, S) finished.
        with_attention = model.has_attention
        if with_attention:
            attention = encoded.memory.new_zeros(batch, beam, max_steps, src.size(1))
            finished_attention = encoded.memory.new_zeros(batch, self.nbest, max_steps, src.size(1))
        batch_index = torch.arange(batch, device=device)[:, None]
        # Finished sentences leave the batch; their n-best lists are collected here by original position.
        sentence_ids = torch.arange(batch, device=device)
        out_tokens, out_scores = finished_tokens.clone(), finished_scores.clone()
        out_attention = finished_attention.clone() if with_attention else None

        for t in range(max_steps):
            logits, state, weights = model.decode_step(tokens, state, encoded)  # (B·K, V), …, (B·K, S)
            # One fused pass; on CPU it is about twice as fast as a separate logsumexp normalizer.
            log_probs = logits.float().log_softmax(-1)  # (B·K, V)
            vocab = log_probs.size(-1)
            if t + 1 < self.min_length:
                log_probs[:, eos_id] = float("-inf")
            if self.no_repeat_ngram_size:
                banned = banned_ngram_tokens(
                    history[:, :, :t].reshape(batch * beam, t), self.no_repeat_ngram_size, vocab
                )
                log_probs = log_probs.masked_fill(banned, float("-inf"))
            # At its length limit a sentence may only end (checked on the host: no sync, no pass when none is).
            if t + 1 >= shortest_limit:
                at_limit = (limits <= t + 1).repeat_interleave(beam)  # (B·K,)
                eos_log_probs = log_probs[:, eos_id]  # masked_fill below makes a new tensor
                log_probs = log_probs.masked_fill(at_limit[:, None], float("-inf"))
                log_probs[:, eos_id] = eos_log_probs

            # The best continuations of each beam first (a global top-n is always among its row's top n),
            # so the scores are only added for those: (B·K, n) instead of (B·K, V).
            n = min(2 * beam, beam * vocab)
            row_log_probs, row_tokens = log_probs.topk(min(n, vocab), dim=-1)  # (B·K, n)
            row_scores = (row_log_probs + beam_scores.view(-1, 1)).view(batch, -1)  # (B, K·n)
            cand_scores, cand_index = row_scores.topk(n, dim=-1)  # (B, 2K)
            cand_beam = cand_index // row_tokens.size(1)
            cand_token = row_tokens.view(batch, -1).gather(1, cand_index)
            cand_history = history.gather(1, cand_beam[:, :, None].expand(-1, -1, max_steps))  # a new tensor
            cand_history[:, :, t] = cand_token  # (B, 2K, L)
            if with_attention:
                cand_attention = attention[batch_index, cand_beam]  # (B, 2K, L, S)
                cand_attention[:, :, t] = weights.view(batch, beam, -1)[batch_index, cand_beam]

            # Set aside the <eos> candidates among the top K, ranked with the length penalty.
            is_eos = (cand_token == eos_id) & torch.isfinite(cand_scores)
            ending = is_eos.clone()
            ending[:, beam:] = False
            ending_scores = torch.where(ending, cand_scores / length_penalty(t + 1.0, self.alpha), float("-inf"))
            pool_scores = torch.cat([finished_scores, ending_scores], dim=1)  # (B, nbest + 2K)
            pool_tokens = torch.cat([finished_tokens, cand_history], dim=1)
            finished_scores, keep = pool_scores.topk(self.nbest, dim=1)
            finished_tokens = pool_tokens[batch_index, keep]
            if with_attention:
                finished_attention = torch.cat([finished_attention, cand_attention], dim=1)[batch_index, keep]

            # The K best candidates that did not end continue.
            live_scores = cand_scores.masked_fill(is_eos, float("-inf"))
            beam_scores, live = live_scores.topk(beam, dim=1)  # (B, K)
            source_beam = cand_beam.gather(1, live)
            history = cand_history[batch_index, live]
            if with_attention:
                attention = cand_attention[batch_index, live]
            tokens = cand_token.gather(1, live).view(-1)
            reorder = (source_beam + batch_index * beam).view(-1)  # (B·K,)
            state = state.index_select(reorder)

            # Done: nbest finished, and no live hypothesis can still beat the worst of them.
            best_live = (
                beam_scores[:, 0] / length_penalty(limits.float(), self.alpha) if self.alpha else beam_scores[:, 0]
            )
            done = finished_scores[:, -1] >= best_live
            n_done = int(done.sum())  # the step's one host sync
            if n_done == batch:
                break
            # A done sentence stays done (live scores only fall), so it can wait until a quarter of the batch is
            # done; then the done ones leave, and every later step costs less.
            if n_done * 4 >= batch:
                ids = sentence_ids[done]
                out_tokens[ids], out_scores[ids] = finished_tokens[done], finished_scores[done]
                keep = (~done).nonzero().squeeze(1)  # (B',)
                rows = (keep[:, None] * beam + torch.arange(beam, device=device)).view(-1)  # (B'·K,)
                sentence_ids, limits, beam_scores, history = (
                    sentence_ids[keep],
                    limits[keep],
                    beam_scores[keep],
                    history[keep],
                )
                finished_tokens, finished_scores = finished_tokens[keep], finished_scores[keep]
                if with_attention:
                    out_attention[ids] = finished_attention[done]
                    attention, finished_attention = attention[keep], finished_attention[keep]
                tokens, state, encoded = tokens[rows], state.index_select(rows), encoded.index_select(rows)
                batch = keep.numel()
                batch_index = torch.arange(batch, device=device)[:, None]
        out_tokens[sentence_ids], out_scores[sentence_ids] = finished_tokens, finished_scores
        if with_attention:
            out_attention[sentence_ids] = finished_attention
        return Hypotheses(
            out_tokens[:, :, : t + 1], out_scores, out_attention[:, :, : t + 1] if with_attention else None
        )

    def __call__(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Return each sentence's best hypothesis: tokens (B, L), scores (B,) and attention (B, L, S) or None."""
        nbest = self.search(model, src, src_lengths, sos_id, eos_id, pad_id)
        return Hypotheses(
            nbest.tokens[:, 0], nbest.scores[:, 0], None if nbest.attention is None else nbest.attention[:, 0]
        )
