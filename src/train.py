"""Train a seq2seq model: ``python src/train.py [overrides]`` (see conf/train.yaml)."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from seq2seq.build import build_module
from seq2seq.callbacks import keep_sweeping
from seq2seq.checkpoint import checkpoint_tokenizers, load_checkpoint
from seq2seq.config_checks import check_hyperparameters
from seq2seq.errors import CheckpointError
from seq2seq.utils.cli import entry_point, instantiate_group, plain, user_errors, write_metrics
from seq2seq.utils.run_metrics import METRICS_FILE

log = entry_point(__file__)
# conf/hydra/launcher/submitit_slurm.yaml is complete, so Hydra's (deprecated) check against the plugin's schema is moot
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_slurm' is validated against ConfigStore schema")
# processes started for jobs (submitit, joblib) import seq2seq from here too, installed or not
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")])
)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit on the train split, then evaluate the best checkpoint on val and test; return the metrics."""
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    check_hyperparameters(cfg)  # before any data is read
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    # Resuming keeps the checkpoint's tokenizers, so the vocabulary cannot drift.
    # load_checkpoint reads it as data only (weights_only=True) before Lightning reads it again to resume.
    resumed = checkpoint_tokenizers(load_checkpoint(cfg.ckpt_path)) if cfg.get("ckpt_path") else None
    datamodule = instantiate(cfg.data, tokenizers=resumed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    config = plain(cfg)
    module = build_module(cfg, datamodule.tokenizers_state(), config=config)
    loggers = instantiate_group(cfg.get("logger"))
    for logger in loggers:
        logger.log_hyperparams(config)  # the resolved config: W&B run config, CSV/TensorBoard hparams.yaml
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")), logger=loggers or False)
    if trainer.is_global_zero:
        datamodule.save_tokenizers(output_dir)
        log.info("run dir: %s", output_dir)

    try:
        # weights_only: the file is read as data only, as load_checkpoint read it
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except SIGTERMException:  # stopped after saving a checkpoint (CheckpointOnInterrupt): not finished, no metrics
        raise SystemExit(128 + signal.SIGTERM) from None
    except RuntimeError as error:
        if "state_dict" not in str(error):
            raise
        raise CheckpointError(
            f"{cfg.ckpt_path} holds a model of another shape than model=…: resume with the checkpoint's model "
            "config (see .hydra/config.yaml in its run dir)"
        ) from None
    best = (trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else "") or None
    log.info("evaluating %s", best or "the last weights")
    metrics: dict[str, float] = {}
    module.results.clear()
    metrics.update(trainer.validate(module, datamodule=datamodule, ckpt_path=best, weights_only=True)[0])
    if cfg.get("test"):
        metrics.update(trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)[0])
    metrics.update(module.results)  # the exact values (Lightning returns float32 copies)
    if trainer.is_global_zero:
        write_metrics(output_dir / METRICS_FILE, {**metrics, "signatures": module.val_metrics.signatures()})
        log.info("metrics written to %s", output_dir / METRICS_FILE)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the optimized metric for sweepers (None for a failed multirun job)."""
    with user_errors(), keep_sweeping():  # in a multirun a failing job is recorded and the sweep goes on
        metrics = train(cfg)
        name = cfg.get("optimized_metric")
        return metrics.get(name) if name else None
    return None


if __name__ == "__main__":
    main()
