"""Export a checkpoint to ONNX: ``python src/export.py ckpt_path=PATH output=DIR [decoding=…]``.

DIR gets the encoder and one-step decoder graphs, the tokenizers and a ``config.json`` (model, data and decoding
settings, the run's recorded metrics); `seq2seq.inference.onnx.OnnxModel` decodes it with ONNX Runtime, through the
same searches as the eager model. See docs/export.md.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from seq2seq.build import checkpoint_paths, load_trained, restore_module
from seq2seq.checkpoint import checkpoint_tokenizers
from seq2seq.errors import ConfigError
from seq2seq.inference.onnx import is_exported
from seq2seq.inference.onnx_export import export_onnx, recorded_metrics
from seq2seq.utils.cli import entry_point, plain, user_errors

entry_point(__file__)


def check_output(output: Path) -> None:
    """Refuse an ``output`` that is a file, or a directory holding anything but an earlier export."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output={output} is a file: pass a directory (new, empty, or an earlier export)")
    if output.is_dir() and any(output.iterdir()) and not is_exported(output):
        raise ConfigError(
            f"output={output} is a directory with other files in it: pass a new or empty directory, or an earlier "
            "export to replace"
        )


def export(cfg: DictConfig) -> Path:
    """Read, verify and rebuild the checkpoint, then write the export directory."""
    paths = checkpoint_paths(cfg.ckpt_path)
    if len(paths) != 1:
        raise ConfigError(
            "export.py exports one checkpoint: run it once per ensemble member (output=DIR1, output=DIR2, …) and "
            "decode them together with translate.py ckpt_path=[DIR1,DIR2]"
        )
    output = Path(str(cfg.output))
    check_output(output)
    if is_exported(paths[0]):
        raise ConfigError(f"ckpt_path={paths[0]} is an exported directory: pass a .ckpt written by src/train.py")
    checkpoint, trained = load_trained(paths[0], cfg.get("decoding"))
    module = restore_module(checkpoint, trained)
    config = {**checkpoint["seq2seq"]["config"], "decoding": plain(trained.decoding)}
    metrics = recorded_metrics(checkpoint, paths[0])
    return export_onnx(module, checkpoint_tokenizers(checkpoint), config, output, metrics, verify=cfg.verify)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export.yaml")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        print(f"exported to {export(cfg)}")


if __name__ == "__main__":
    main()
