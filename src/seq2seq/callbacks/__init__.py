"""Lightning callbacks of this project."""

from seq2seq.callbacks.interrupt import CheckpointOnInterrupt

__all__ = ["CheckpointOnInterrupt"]
