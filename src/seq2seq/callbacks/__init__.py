"""Lightning callbacks of this project."""

from seq2seq.callbacks.attention_plots import AttentionPlots
from seq2seq.callbacks.interrupt import CheckpointOnInterrupt

__all__ = ["AttentionPlots", "CheckpointOnInterrupt"]
