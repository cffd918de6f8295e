"""Draw attention heatmaps for a few fixed validation sentences at every validation."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from seq2seq.data.batching import collate
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, tokenizer_from_str
from seq2seq.plotting import attention_figure, save_figure


class AttentionPlots(Callback):
    """Decode the first ``num_examples`` validation pairs with the module's decoding strategy and plot where each
    output token attended; PNGs go to ``dirpath/epoch<E>_example<i>.png`` (``final_…`` for the
    validation after fit) and, as images, to TensorBoard and W&B.

    Does nothing for a model without attention. Runs on rank 0 only.

    Args:
        dirpath: where the PNG files go (the run dir's ``plots/``).
        num_examples: how many validation sentences to draw.
    """

    def __init__(self, dirpath: str | Path, num_examples: int = 3) -> None:
        self.dirpath = Path(dirpath)
        self.num_examples = num_examples

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not pl_module.model.has_attention:
            return
        val = trainer.datamodule.dataset("val")
        examples = [val[i] for i in range(min(self.num_examples, len(val)))]
        if not examples:
            return
        batch = collate(examples).to(pl_module.device)
        hypotheses = pl_module.decoding(pl_module.model, batch.src, batch.src_lengths, SOS_ID, EOS_ID, PAD_ID)
        src_tokenizer = tokenizer_from_str(pl_module.tokenizers["source"])
        # During fit one set per epoch; the validation of the best checkpoint after fit is "final".
        stage = f"epoch{trainer.current_epoch:03d}" if trainer.state.fn == "fit" else "final"
        paths = []
        for i in range(len(examples)):
            figure = attention_figure(
                hypotheses.attention[i],
                batch.src[i].tolist(),
                hypotheses.tokens[i].tolist(),
                src_tokenizer,
                pl_module.target_tokenizer,
                EOS_ID,
            )
            figure.suptitle(f"{stage}, validation example {i}", fontsize=9)
            paths.append(save_figure(figure, self.dirpath / f"{stage}_example{i}.png"))
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(f"attention/example{i}", figure, global_step=trainer.global_step)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("attention", [str(path) for path in paths], step=trainer.global_step)
