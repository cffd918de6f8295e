"""Check that the selected Hydra launcher can work on this machine (DDP inside a sweep: `seq2seq.config_checks`)."""

from __future__ import annotations

import shutil
import sys
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig


def is_slurm(launcher: DictConfig) -> bool:
    """Whether ``launcher`` (a ``hydra.launcher`` node) submits to SLURM."""
    return str(launcher.get("_target_", "")).endswith("SlurmLauncher")


class CheckLauncher(HydraCallback):
    """Hydra callback: ``hydra/launcher=submitit_slurm`` on a machine without SLURM (no ``sbatch``), or with a
    job size that SLURM cannot take, ends with one ``error: …`` line and exit code 2 before anything is submitted."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if not is_slurm(launcher):
            return
        if shutil.which("sbatch") is None:
            self._fail(
                "hydra/launcher=submitit_slurm needs SLURM, but `sbatch` is not on this machine's PATH: run from a "
                "SLURM login node, or sweep locally with hydra/launcher=submitit_local or hydra/launcher=joblib"
            )
        tasks = launcher.get("tasks_per_node")
        if not isinstance(tasks, int) or tasks < 1:
            self._fail(
                f"hydra.launcher.tasks_per_node={tasks} (from trainer.devices): pass the GPUs per node as a number, "
                "e.g. trainer.devices=4 trainer.num_nodes=2"
            )

    @staticmethod
    def _fail(message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)
