"""Model building blocks: encoder, context (bridge), decoder and the whole seq2seq model."""

from seq2seq.modules.seq2seq import Encoded, Seq2Seq

__all__ = ["Encoded", "Seq2Seq"]
