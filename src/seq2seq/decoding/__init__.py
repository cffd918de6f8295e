"""Decoding strategies (``decoding=`` config group): each is a callable returning `Hypotheses`."""

from seq2seq.decoding.greedy import GreedySearch, Hypotheses

__all__ = ["GreedySearch", "Hypotheses"]
