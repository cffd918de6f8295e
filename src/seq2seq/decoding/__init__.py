"""Decoding strategies (``decoding=`` config group): each is a callable returning `Hypotheses`;
`Ensemble` decodes several models as one."""

from seq2seq.decoding.beam import BeamSearch
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.greedy import GreedySearch
from seq2seq.decoding.hypotheses import Hypotheses
from seq2seq.decoding.sampling import SampleSearch

__all__ = ["BeamSearch", "Ensemble", "GreedySearch", "Hypotheses", "SampleSearch"]
