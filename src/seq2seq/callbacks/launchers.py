"""Check that the selected Hydra launcher, and DDP inside a sweep, can work on this machine."""

from __future__ import annotations

import shutil
import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.errors import ConfigError


def _is_slurm(launcher: DictConfig) -> bool:
    return str(launcher.get("_target_", "")).endswith("SlurmLauncher")


class CheckLauncher(HydraCallback):
    """Hydra callback: ``hydra/launcher=submitit_slurm`` on a machine without SLURM (no ``sbatch``), or with a
    job size that SLURM cannot take, ends with one ``error: …`` line and exit code 2 before anything is submitted."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if not _is_slurm(launcher):
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


def check_sweep_strategy(trainer: DictConfig) -> None:
    """Refuse multi-process DDP in a job of a local multirun: Lightning starts the other ranks by running the
    script's command line again, which would start the whole sweep again (SLURM starts the ranks itself)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    strategy = str(trainer.get("strategy") or "")
    relaunches = strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork", "notebook"))
    several = str(trainer.get("devices")) != "1" or int(trainer.get("num_nodes") or 1) > 1
    if relaunches and several and not _is_slurm(HydraConfig.get().launcher):
        raise ConfigError(
            f"trainer.strategy={strategy} with several processes cannot run inside a local multirun (-m): train each "
            "configuration as its own run, or sweep on a cluster with hydra/launcher=submitit_slurm"
        )
