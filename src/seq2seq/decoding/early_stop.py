"""The early stop every search shares: decode step by step, and look whether every sentence is done only once
every few steps, since each look makes the host wait for the device."""

from __future__ import annotations

import torch


class EarlyStop:
    """Counts, on the device, the steps after which some sentence was not done yet, and reads that count (the
    loop's one host sync) once every ``check_every`` steps and after the last.

    Once every sentence is done, the count is the index of the step where the last one finished: the steps since
    only added padding (greedy, sampling) or changed no n-best list (beam), so the outputs keep ``length`` steps.

    Args:
        max_steps: steps the loop runs at most.
        check_every: steps between two looks (see `seq2seq.decoding.hypotheses.check_interval`).
        device: where the sentences are decoded.
    """

    def __init__(self, max_steps: int, check_every: int, device: torch.device) -> None:
        self.max_steps, self.check_every = max_steps, check_every
        self.length = max_steps  # steps the outputs keep
        self.stopped = False
        self._undone_steps = torch.zeros((), dtype=torch.long, device=device)

    def record(self, done: torch.Tensor) -> None:
        """After a step: whether each sentence (B,) is done, counted on the device (no host sync)."""
        self._undone_steps += ~done.all()

    def due(self, t: int) -> bool:
        """Whether to look after step ``t`` (0-based): every ``check_every`` steps and after the last."""
        return (t + 1) % self.check_every == 0 or t + 1 == self.max_steps

    def look(self, t: int, *also: torch.Tensor) -> list[int]:
        """Read the count after step ``t``, with the scalars ``also`` in the same host sync, and return those.
        Sets ``stopped`` (every sentence done: break) and ``length`` (the steps the outputs keep)."""
        undone, *values = torch.stack((self._undone_steps, *also)).tolist()
        if undone <= t:  # all were done after step `undone`
            self.stopped, self.length = True, undone + 1
        return values
