"""The encoder → context → decoder model and its parts."""

from seq2seq.modules.seq2seq import Seq2Seq
from seq2seq.modules.state import DecoderState, Encoded

__all__ = ["DecoderState", "Encoded", "Seq2Seq"]
