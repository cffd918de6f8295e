"""Lightning callbacks of this project, and the Hydra callbacks of runs and sweeps."""

from seq2seq.callbacks.attention_plots import AttentionPlots
from seq2seq.callbacks.checkpoint import BestAndLastCheckpoint
from seq2seq.callbacks.early_stopping import early_stopping
from seq2seq.callbacks.interrupt import CheckpointOnInterrupt
from seq2seq.callbacks.launchers import CheckLauncher
from seq2seq.callbacks.predictions import PredictionsTable
from seq2seq.callbacks.progress import ProgressLog
from seq2seq.callbacks.random_state import RandomState
from seq2seq.callbacks.summary import MultirunSummary, keep_sweeping
from seq2seq.callbacks.wandb import FinishWandbRun, WandbLogger
from seq2seq.callbacks.weight_averaging import ema

__all__ = [
    "AttentionPlots",
    "BestAndLastCheckpoint",
    "CheckLauncher",
    "CheckpointOnInterrupt",
    "FinishWandbRun",
    "MultirunSummary",
    "PredictionsTable",
    "ProgressLog",
    "RandomState",
    "WandbLogger",
    "early_stopping",
    "ema",
    "keep_sweeping",
]
