"""Keep the random number streams in checkpoints, so a resumed run draws what the uninterrupted run would have."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def collect_random_states() -> dict[str, Any]:
    """The global torch (CPU and CUDA), Python and NumPy generator states, as plain containers and tensors (so
    ``torch.load(weights_only=True)`` reads them)."""
    version, python_state, gauss = random.getstate()
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(python_state), gauss],
        "numpy": [name, keys.tolist(), position, has_gauss, cached_gauss],
    }


def restore_random_states(states: dict[str, Any]) -> None:
    """Put back what `collect_random_states` returned (CUDA states only on as many devices as were saved)."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("torch.cuda") or []
    if cuda and torch.cuda.is_available():
        for device, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)
    version, python_state, gauss = states["python"]
    random.setstate((version, tuple(python_state), gauss))
    name, keys, position, has_gauss, cached_gauss = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gauss))


def gather_random_states(states: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's ``states``, in rank order (a collective: every rank calls it at the same point)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [states]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, states)
    return gathered


class RandomState(Callback):
    """Store every rank's random states in every checkpoint; a resumed run puts each rank's back just before its
    first training batch, so dropout masks and teacher-forcing coin flips go on as if the run had never stopped.

    Restoring at the first batch rather than at load time leaves out what happens in between only on resume (the
    sanity check, setting up the data). Under DDP the ranks draw different numbers (their batches differ), so the
    checkpoint holds the states of every rank (``{"ranks": [rank 0's, rank 1's, …]}``, gathered when it is saved,
    which Lightning does on every rank) and each rank gets its own back. A rank the checkpoint has no states for
    (a run resumed on more processes) keeps its seeded streams, as at the start of a run.
    """

    def __init__(self) -> None:
        self._to_restore: list[dict[str, Any]] | None = None  # every rank's states

    def state_dict(self) -> dict[str, Any]:
        return {"ranks": gather_random_states(collect_random_states())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict.get("ranks", [state_dict])  # older checkpoints: rank 0's states only

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._to_restore is not None:
            if trainer.global_rank < len(self._to_restore):
                restore_random_states(self._to_restore[trainer.global_rank])
            self._to_restore = None
