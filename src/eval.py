"""Evaluate a checkpoint: ``python src/eval.py ckpt_path=PATH [data=…] [data.split=NAME] [decoding=…]``.

``data.split``: ``val``, ``test`` or a named test set (``test_2017_flickr``…, `seq2seq.data.test_sets`).

Everything needed comes from the checkpoint (model config, tokenizers, data and decoding configs);
``data=``/``decoding=`` on the command line replace the checkpoint's. ``ckpt_path=[a.ckpt,b.ckpt]`` evaluates the
ensemble of several checkpoints with one vocabulary (`seq2seq.decoding.Ensemble`: the log of their mean
probability, in decoding and in the teacher-forced loss, ppl and acc), with the first one's data and decoding.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from seq2seq.build import checkpoint_paths, load_ensemble, restore_ensemble
from seq2seq.checkpoint import checkpoint_tokenizers
from seq2seq.data.test_sets import split_prefix
from seq2seq.inference.evaluation import eval_data, eval_datamodule
from seq2seq.lit_module import Prediction
from seq2seq.tokenized_bleu import tokenized_bleu_metrics
from seq2seq.utils.cli import entry_point, plain, user_errors, write_metrics, write_text_atomic
from seq2seq.utils.run_metrics import METRICS_FILE

log = entry_point(__file__)


def write_predictions(output_dir: Path, predictions: Sequence[Prediction]) -> None:
    """Write ``predictions.tsv`` (index, source, reference, hypothesis) and ``hypotheses.txt`` (one per line).

    ``predictions`` are in input order, so line ``i`` of ``hypotheses.txt`` translates line ``i`` of the split and
    ``sacrebleu REFERENCE -i hypotheses.txt`` gives the run's BLEU.
    """
    table = io.StringIO()
    writer = csv.writer(table, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(["index", "source", "reference", "hypothesis"])
    writer.writerows(predictions)
    write_text_atomic(output_dir / "predictions.tsv", table.getvalue())
    write_text_atomic(output_dir / "hypotheses.txt", "".join(f"{p.hypothesis}\n" for p in predictions))


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Decode one split with the checkpoint (or the ensemble of several); write metrics.json, predictions.tsv and
    hypotheses.txt to the run dir."""
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    paths = checkpoint_paths(cfg.ckpt_path)
    members = load_ensemble(paths, cfg.get("decoding"))
    checkpoint, trained = members[0]  # the ensemble's data, decoding and tokenizers

    trained.data, split, stage = eval_data(cfg.data, trained, cfg.paths.data_dir)
    datamodule = eval_datamodule(trained.data, checkpoint_tokenizers(checkpoint), stage)
    datamodule.prepare_data()
    module = restore_ensemble(members)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    run = trainer.validate if stage == "val" else trainer.test
    metrics = dict(run(module, datamodule=datamodule)[0])
    metrics.update(module.results)  # the exact values (Lightning returns float32 copies)

    if trainer.is_global_zero:
        # the papers' lowercased, Moses-tokenized BLEU, where the split has such a reference (Multi30k test2016)
        hypotheses = [prediction.hypothesis for prediction in module.predictions]
        prefix, target_lang = split_prefix(trained.data, stage), trained.data["target_lang"]
        tokenized, tokenized_signature = tokenized_bleu_metrics(prefix, target_lang, hypotheses, stage)
        metrics.update(tokenized)
        write_metrics(
            output_dir / METRICS_FILE,
            {
                **metrics,
                "signatures": {**module.test_metrics.signatures(), **tokenized_signature},
                **({"checkpoint": str(Path(paths[0]).resolve())} if len(paths) == 1 else {}),
                "checkpoints": [str(Path(path).resolve()) for path in paths],
                "split": split,
                "decoding": plain(trained.decoding),
            },
        )
        write_predictions(output_dir, module.predictions)
        log.info("metrics and predictions written to %s", output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        evaluate(cfg)


if __name__ == "__main__":
    main()
