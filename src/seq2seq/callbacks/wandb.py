"""Weights & Biases: a logger that always trains on (offline when W&B cannot be used) and one W&B run per job."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from seq2seq import compat
from seq2seq.callbacks.summary import job_failed

log = logging.getLogger("seq2seq")
_unreachable: str | None = None  # why W&B could not be reached; later runs of this process go offline at once


def has_credentials() -> bool:
    """Whether W&B credentials are configured: ``WANDB_API_KEY``, an identity token, or a netrc entry (wandb login)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import wandb

    host = urlparse(os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url).hostname
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _job_names() -> tuple[str | None, str | None, str | None]:
    """(name, group, notes) from the Hydra job: in a multirun ``job <number>`` in a group named after the multirun,
    else the run dir's name and no group; notes list the job's command-line overrides."""
    if not HydraConfig.initialized():
        return None, None, None
    hydra = HydraConfig.get()
    notes = "overrides: " + " ".join(hydra.overrides.task) if hydra.overrides.task else None
    if hydra.mode == RunMode.MULTIRUN:
        return f"job {hydra.job.num}", f"{hydra.job.name}-{Path(hydra.sweep.dir).name}", notes
    return Path(hydra.runtime.output_dir).name, None, notes


class WandbLogger(LightningWandbLogger):
    """Lightning's `WandbLogger` that starts its W&B run at once and never stops training.

    Without credentials (and without ``WANDB_MODE``) the run is offline; when W&B cannot be reached (no network,
    an unknown entity) it goes offline too (as does the rest of this process). Either way one log line gives the
    ``wandb sync`` command that uploads the run later. ``WANDB_MODE`` (online, offline, disabled) is obeyed.

    Args:
        project: the W&B project.
        save_dir: where ``wandb/`` goes (the run dir).
        entity: the user or team; null = the account's default.
        name: the run's name; null = the run dir's name, in a multirun ``job <number>``.
        group: null = none for a single run, ``<task>-<multirun dir name>`` for the jobs of a multirun.
        tags: e.g. cell, attention and dataset.
        notes: a free-text description; null = the job's command-line overrides.
        log_model: true logs the best (and last) checkpoint as a ``model`` artifact at the end of training.
        init_timeout: seconds to wait for the W&B server before going offline.
        **kwargs: further ``wandb.init`` arguments (``job_type``, ``mode``, …).
    """

    def __init__(
        self,
        project: str,
        save_dir: str,
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        notes: str | None = None,
        log_model: bool | str = False,
        init_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        import wandb

        default_name, default_group, default_notes = _job_names()
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project,
            save_dir=save_dir,
            name=name or default_name,
            log_model=log_model,
            entity=entity,
            group=group or default_group,
            tags=[str(tag)[:64] for tag in tags],
            notes=notes or default_notes,
            settings=wandb.Settings(init_timeout=init_timeout),
            **kwargs,
        )
        compat.wandb_init_args(self).pop("anonymous", None)  # deprecated in wandb, which warns even about None
        if rank_zero_only.rank == 0:
            self._start()

    def _start(self) -> None:
        global _unreachable
        reason = None
        init = compat.wandb_init_args(self)  # what wandb.init will get
        if not os.environ.get("WANDB_MODE") and "mode" not in init:
            reason = _unreachable or (None if has_credentials() else "no W&B API key (WANDB_API_KEY or `wandb login`)")
            if reason:
                init["mode"] = "offline"
        try:
            run = self.experiment
        except Exception as error:  # any failure to start online: keep training, offline
            where = f"entity {init['entity']!r}" if init.get("entity") else "the server"
            detail = (str(error).strip().splitlines() or [""])[0]
            reason = _unreachable = f"W&B {where} cannot be reached ({type(error).__name__}: {detail})"
            init["mode"] = "offline"
            compat.wandb_forget_run(self)
            run = self.experiment
        if getattr(run, "offline", False):
            sync_dir = Path(run.dir).parent
            log.warning(
                "%s: logging offline; upload later with: wandb sync %s", reason or "WANDB_MODE=offline", sync_dir
            )


class FinishWandbRun(HydraCallback):
    """Hydra callback: finish the W&B run at the end of each job (failed jobs with exit code 1), so the next job
    of a multirun starts its own run instead of logging into this one."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        wandb = sys.modules.get("wandb")  # not imported: no run to finish
        if wandb is not None and wandb.run is not None:
            wandb.finish(exit_code=1 if job_failed(config, job_return) else 0)
