"""Greedy decoding: y_t = argmax p(y_t | y_<t, x), fed back until ``<eos>``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from seq2seq.decoding.hypotheses import Hypotheses, check_interval, max_decode_lengths
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq


class GreedySearch:
    """Batched greedy decoding (``decoding=greedy``).

    Args:
        max_length: most tokens generated per sentence, ``<eos>`` included.
        max_length_ratio: if set, at most ``ratio × source length + 5`` tokens per sentence.
    """

    check_every: int | None = None  # steps between two looks at whether all have ended; None: `check_interval`
    nbest = 1  # hypotheses per sentence that `search` returns

    def __init__(self, max_length: int = 100, max_length_ratio: float | None = None) -> None:
        if max_length < 1:
            raise ConfigError(f"decoding.max_length must be >= 1, got {max_length}")
        self.max_length = max_length
        self.max_length_ratio = max_length_ratio

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
        """Decode with ``choose`` picking each next token (B,) from the log-probabilities (B, V), looking whether
        every sentence has ended once every ``check_every`` steps."""
        encoded = model.encode(src, src_lengths)
        limits = max_decode_lengths(src_lengths, self.max_length, self.max_length_ratio).to(src.device)
        batch, max_steps = src.size(0), int(limits.max())
        tokens = torch.full((batch,), sos_id, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        scores = torch.zeros(batch, device=src.device)
        # Steps after which some sentence was still unfinished: once all are, it is the index of that step.
        unfinished_steps = torch.zeros((), dtype=torch.long, device=src.device)
        state, steps, weights = encoded.state, [], []
        length = max_steps
        for t in range(max_steps):
            logits, state, attention = model.decode_step(tokens, state, encoded)  # (B, V), …, (B, S) or None
            weights.append(attention)
            log_probs = logits.float().log_softmax(-1)
            best = choose(log_probs)  # (B,)
            # A sentence at its length limit is forced to end.
            best = torch.where(limits <= t + 1, torch.full_like(best, eos_id), best)
            scores += torch.where(finished, 0.0, log_probs.gather(1, best[:, None]).squeeze(1))
            tokens = torch.where(finished, torch.full_like(best, pad_id), best)
            steps.append(tokens)
            finished |= tokens == eos_id
            unfinished_steps += ~finished.all()
            if (t + 1) % check_every == 0 or t + 1 == max_steps:
                ended_at = int(unfinished_steps)  # the loop's one host sync
                if ended_at <= t:  # all ended at step ended_at; the steps since only added padding
                    length = ended_at + 1
                    break
        attention = torch.stack(weights[:length], dim=1) if model.has_attention else None  # (B, L, S)
        return Hypotheses(torch.stack(steps[:length], dim=1), scores, attention)  # (B, L), (B,)
