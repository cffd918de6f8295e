"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

import torch

from seq2seq.decoding.greedy import GreedySearch
from seq2seq.decoding.hypotheses import Hypotheses, check_interval
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq


def default_generator(device: torch.device) -> torch.Generator | None:
    """The generator ``torch.multinomial`` draws from on ``device`` (None where we do not know it)."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return None


class SampleSearch(GreedySearch):
    """Sample each next token (``decoding=sample``); reproducible through torch's seeded generator.

    Scores are the model's log-probabilities of the sampled tokens, before the temperature and filtering (after
    the constraints, which only forbid tokens). Decoding draws from the
    generator exactly as if it had stopped at the step where the last sentence ended, so a seeded run samples the
    same tokens however its batches end.

    Args:
        temperature: divides the logits; < 1 sharpens, > 1 flattens.
        top_k: sample among the k most likely tokens only (0 = all).
        top_p: sample among the smallest set of tokens whose probability reaches p (1 = all).
        max_length: most tokens per sentence, ``<eos>`` included.
        max_length_ratio: if set, at most ``ratio × source length + 5`` tokens.
        min_length: ``<eos>`` is not allowed before this many tokens (``<eos>`` included).
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0 = off).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_length: int = 100,
        max_length_ratio: float | None = None,
        min_length: int = 0,
        no_repeat_ngram_size: int = 0,
    ) -> None:
        super().__init__(max_length, max_length_ratio, min_length, no_repeat_ngram_size)
        if temperature <= 0:
            raise ConfigError(f"decoding.temperature must be > 0, got {temperature}")
        if top_k < 0:
            raise ConfigError(f"decoding.top_k must be >= 0, got {top_k}")
        if not 0.0 < top_p <= 1.0:
            raise ConfigError(f"decoding.top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def choose(self, log_probs: torch.Tensor) -> torch.Tensor:
        logits = log_probs / self.temperature  # (B, V)
        if self.top_k:
            kth = logits.topk(min(self.top_k, logits.size(-1)), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            # drop a token when the ones before it already reach top_p (the first always stays)
            drop = cumulative - sorted_logits.softmax(-1) >= self.top_p
            logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1).squeeze(1)

    @torch.no_grad()
    def __call__(
        self, model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, sos_id: int, eos_id: int, pad_id: int
    ) -> Hypotheses:
        """Sample for the batch ``src`` (B, S) of lengths ``src_lengths`` (B,)."""
        check_every, generator = check_interval(src.device, self.check_every), default_generator(src.device)
        if check_every == 1 or generator is None:  # no steps after the last <eos>, or no way to rewind their draws
            return self.decode(model, src, src_lengths, sos_id, eos_id, pad_id, self.choose, 1)
        after_step = []  # the generator's state after each step's draw

        def choose(log_probs: torch.Tensor) -> torch.Tensor:
            chosen = self.choose(log_probs)
            after_step.append(generator.get_state())
            return chosen

        found = self.decode(model, src, src_lengths, sos_id, eos_id, pad_id, choose, check_every)
        generator.set_state(after_step[found.tokens.size(1) - 1])  # undo the draws after the last sentence ended
        return found
