"""Average checkpoints: ``python src/average.py ckpt_paths=[a.ckpt,b.ckpt,…] output=avg.ckpt``.

The result is a normal checkpoint (weights, tokenizers, run config) for ``eval.py`` and ``translate.py``; its
weights are the element-wise mean of the inputs', which must share the model and the vocabularies.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig

from seq2seq.checkpoint import check_same_vocabularies, load_checkpoint
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.utils.cli import atomic_open, entry_point, user_errors

entry_point(__file__)


def average_checkpoints(paths: list[str | Path]) -> dict[str, Any]:
    """A checkpoint with the mean weights of ``paths`` (floating-point tensors; others from the last one).

    The training state (optimizer, schedulers, loops) is left out: an average is for evaluation, not resuming.
    """
    if not paths:
        raise ConfigError("ckpt_paths is empty: pass ckpt_paths=[a.ckpt,b.ckpt]")
    checkpoints = [load_checkpoint(path) for path in paths]
    check_same_vocabularies(paths, checkpoints, "average checkpoints of one run")
    first = checkpoints[0]
    for path, checkpoint in zip(paths[1:], checkpoints[1:]):
        shapes = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
        if shapes != {k: tuple(v.shape) for k, v in first["state_dict"].items()}:
            raise CheckpointError(f"{path} holds another model than {paths[0]}: average checkpoints of one model")
    state = {}
    for name, value in checkpoints[-1]["state_dict"].items():
        if value.is_floating_point():
            total = sum(checkpoint["state_dict"][name].double() for checkpoint in checkpoints)
            value = (total / len(checkpoints)).to(value.dtype)
        state[name] = value
    last = checkpoints[-1]
    return {
        "state_dict": state,
        "seq2seq": last["seq2seq"],
        "epoch": last.get("epoch"),
        "global_step": last.get("global_step"),
        "pytorch-lightning_version": last.get("pytorch-lightning_version"),
        "averaged_from": [str(Path(path).resolve()) for path in paths],
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="average.yaml")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        paths = cfg.ckpt_paths
        if not isinstance(paths, ListConfig):
            raise ConfigError(f"ckpt_paths={paths}: pass a list, ckpt_paths=[a.ckpt,b.ckpt]")
        output = Path(cfg.output)
        averaged = average_checkpoints(list(paths))
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(output, binary=True) as file:  # a run cut short leaves no half-written checkpoint
            torch.save(averaged, file)
        print(f"averaged {len(paths)} checkpoints into {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
