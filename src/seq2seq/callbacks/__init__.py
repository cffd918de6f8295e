"""Lightning callbacks of this project, and the Hydra callbacks of runs and sweeps."""

from seq2seq.callbacks.attention_plots import AttentionPlots
from seq2seq.callbacks.checkpoint import BestAndLastCheckpoint
from seq2seq.callbacks.interrupt import CheckpointOnInterrupt
from seq2seq.callbacks.launchers import CheckLauncher
from seq2seq.callbacks.predictions import PredictionsTable
from seq2seq.callbacks.random_state import RandomState
from seq2seq.callbacks.summary import MultirunSummary, keep_sweeping
from seq2seq.callbacks.wandb import FinishWandbRun, WandbLogger

__all__ = [
    "AttentionPlots",
    "BestAndLastCheckpoint",
    "CheckLauncher",
    "CheckpointOnInterrupt",
    "FinishWandbRun",
    "MultirunSummary",
    "PredictionsTable",
    "RandomState",
    "WandbLogger",
    "keep_sweeping",
]
