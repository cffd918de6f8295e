"""Greedy decoding: y_t = argmax p(y_t | y_<t, x), fed back until ``<eos>``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from seq2seq.decoding.constraints import DecodingStep, apply_constraints, length_constraints
from seq2seq.decoding.early_stop import EarlyStop
from seq2seq.decoding.hypotheses import Hypotheses, check_interval, max_decode_lengths
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq


class GreedySearch:
    """Batched greedy decoding (``decoding=greedy``).

    Args:
        max_length: most tokens generated per sentence, ``<eos>`` included.
        max_length_ratio: if set, at most ``ratio × source length + 5`` tokens per sentence.
        min_length: ``<eos>`` is not allowed before this many tokens (``<eos>`` included).
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0 = off).
    """

    check_every: int | None = None  # steps between two looks at whether all have ended; None: `check_interval`
    nbest = 1  # hypotheses per sentence that `search` returns

    def __init__(
        self,
        max_length: int = 100,
        max_length_ratio: float | None = None,
        min_length: int = 0,
        no_repeat_ngram_size: int = 0,
    ) -> None:
        if max_length < 1:
            raise ConfigError(f"decoding.max_length must be >= 1, got {max_length}")
        if min_length < 0 or no_repeat_ngram_size < 0:
            raise ConfigError("decoding.min_length and no_repeat_ngram_size must be >= 0")
        self.max_length = max_length
        self.max_length_ratio = max_length_ratio
        self.min_length = min_length
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.constraints = length_constraints(min_length, no_repeat_ngram_size)

    def choose(self, log_probs: torch.Tensor) -> torch.Tensor:
        """The next token of each sentence from its log-probabilities (B, V): the argmax."""
        return log_probs.argmax(-1)

    @torch.no_grad()
    def __call__(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Decode the batch ``src`` (B, S) of lengths ``src_lengths`` (B,)."""
        check_every = check_interval(src.device, self.check_every)
        return self.decode(model, src, src_lengths, sos_id, eos_id, pad_id, self.choose, check_every)

    def search(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """The n-best lists, as `BeamSearch.search` returns them (here one hypothesis per sentence): tokens
        (B, 1, L), scores (B, 1) and attention (B, 1, L, S) or None."""
        return self(model, src, src_lengths, sos_id, eos_id, pad_id).map(lambda values: values[:, None])

    def decode(
        self,
        model: Seq2Seq,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        sos_id: int,
        eos_id: int,
        pad_id: int,
        choose: Callable[[torch.Tensor], torch.Tensor],
        check_every: int,
    ) -> Hypotheses:
        """Decode with ``choose`` picking each next token (B,) from the constrained log-probabilities (B, V),
        looking whether every sentence has ended once every ``check_every`` steps."""
        encoded = model.encode(src, src_lengths)
        limits = max_decode_lengths(src_lengths, self.max_length, self.max_length_ratio).to(src.device)
        batch, (max_steps, shortest_limit) = src.size(0), torch.stack((limits.max(), limits.min())).tolist()
        tokens = torch.full((batch,), sos_id, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        scores = torch.zeros(batch, device=src.device)
        state, steps, weights = encoded.state, [], []
        early_stop = EarlyStop(max_steps, check_every, src.device)

        def history() -> torch.Tensor:  # (B, t): the tokens so far, for the n-gram rule
            return torch.stack(steps, dim=1) if steps else tokens.new_empty(batch, 0)

        for t in range(max_steps):
            logits, state, attention = model.decode_step(tokens, state, encoded)  # (B, V), …, (B, S) or None
            weights.append(attention)
            step = DecodingStep(t, eos_id, shortest_limit, lambda: limits, history)
            log_probs = apply_constraints(self.constraints, logits.float().log_softmax(-1), step)  # (B, V)
            best = choose(log_probs)  # (B,); a sentence at its length limit can only end
            scores += torch.where(finished, 0.0, log_probs.gather(1, best[:, None]).squeeze(1))
            tokens = torch.where(finished, torch.full_like(best, pad_id), best)
            steps.append(tokens)
            finished |= tokens == eos_id
            early_stop.record(finished)
            if early_stop.due(t):
                early_stop.look(t)
                if early_stop.stopped:  # the steps since the last sentence ended only added padding
                    break
        length = early_stop.length
        attention = torch.stack(weights[:length], dim=1) if model.has_attention else None  # (B, L, S)
        return Hypotheses(torch.stack(steps[:length], dim=1), scores, attention)  # (B, L), (B,)
