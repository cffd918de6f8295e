"""The LightningModule: the model, its teacher-forcing schedule, optimizer, metrics and decoding."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from seq2seq import compat
from seq2seq.checkpoint import save_payload
from seq2seq.data.batching import Batch
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, decode, tokenizer_from_str
from seq2seq.metrics import Seq2SeqMetrics
from seq2seq.modules import Seq2Seq
from seq2seq.schedulers import LRSchedule
from seq2seq.teacher_forcing import Schedule

log = logging.getLogger("seq2seq")


class Prediction(NamedTuple):
    """One evaluated pair: its row in the split as read, the texts and the hypothesis."""

    index: int
    source: str
    reference: str
    hypothesis: str


class Seq2SeqModule(LightningModule):
    """Train and evaluate a `Seq2Seq` model.

    Args:
        model: the encoder-decoder.
        teacher_forcing: the ratio schedule, called each training step.
        decoding: the strategy that turns sources into hypotheses for val/test/predict.
        optimizer: a partial taking the parameters (``_partial_: true`` in the config).
        scheduler: the optional LR schedule (`seq2seq.schedulers.lr_schedule` of the ``scheduler`` config).
        tokenizers: ``{"source": json, "target": json}``, saved into every checkpoint.
        config: the resolved run config as plain containers, saved into every checkpoint.
    """

    def __init__(
        self,
        model: Seq2Seq,
        teacher_forcing: Schedule,
        decoding: Callable,
        optimizer: Callable,
        tokenizers: dict[str, str],
        config: dict[str, Any],
        scheduler: LRSchedule | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.teacher_forcing = teacher_forcing
        self.decoding = decoding
        self.optimizer_factory = optimizer
        self.lr_schedule = scheduler
        self.tokenizers = tokenizers
        self.config = config
        self.target_tokenizer = tokenizer_from_str(tokenizers["target"])
        # With data.lowercase the tokenizers lowercase, so hypotheses are lowercase: lowercase the references too.
        lowercase = bool(config.get("data", {}).get("lowercase", False))
        self.val_metrics = Seq2SeqMetrics(lowercase=lowercase)
        self.test_metrics = Seq2SeqMetrics(lowercase=lowercase)
        self.predictions: list[Prediction] = []  # the last validation/test pass, in input order once it has ended
        self.results: dict[str, float] = {}  # the last computed "val/…" and "test/…" metrics, at full precision
        # gradient accumulation: target tokens of the window so far, its first batch's, the next backward's weight
        self._window_tokens = 0
        self._token_unit = 1
        self._loss_weight = 1.0

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        ratio = self.teacher_forcing(self.global_step, self.current_epoch)
        # The objective (label-smoothed with model.label_smoothing) and the plain cross-entropy, each a mean over
        # the non-pad target tokens of the batch.
        loss, nll = self.model.losses(
            batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, tf_ratio=ratio, tf_mode=self.teacher_forcing.mode
        )
        batch_size = batch.src.size(0)
        # Nothing here waits for the device: the losses stay off the progress bar (which reads its metrics back
        # with .item() at every refresh; the logger reads them every log_every_n_steps), and the ratio becomes a
        # device tensor by a fill kernel, not by the blocking copy that logging a Python float makes.
        self.log("train/loss", loss, batch_size=batch_size)
        self.log("train/nll_loss", nll, batch_size=batch_size)
        self.log("train/tf_ratio", torch.full((), ratio, device=loss.device), batch_size=batch_size)
        self._weigh_by_tokens(batch, batch_idx)
        return loss

    def _weigh_by_tokens(self, batch: Batch, batch_idx: int) -> None:
        """Make the K batches of an accumulation window count by their target tokens, as one batch of all K would.

        Lightning backpropagates each batch's mean loss divided by K, so a short batch would count as much as a
        long one. Here each batch's loss is weighted (in `backward`) by its token count, in units of the window's
        first batch (weights near 1: the scale of 16-mixed gradients stays as it was), and at the window's last
        batch, before its backward (the one where DDP all-reduces), the gradient accumulated so far is rescaled:
        the window's gradient becomes that of the mean loss over all its tokens (on this rank). Tokens are counted
        on the CPU (`Batch.num_tokens`) and the rescale multiplies by a Python float, so nothing waits for the device.
        """
        trainer = compat.attached_trainer(self)  # None when the step is called outside a fit
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        if accumulate == 1:
            self._loss_weight = 1.0
            return
        tokens = batch.num_tokens or int((batch.tgt_out != PAD_ID).sum())  # a batch made without a count: ask
        if batch_idx % accumulate == 0:  # a new window: Lightning zeroes the gradients after this training_step
            self._window_tokens = 0
        if self._window_tokens == 0:  # also the first batch after resuming mid-window (no gradient was saved)
            self._token_unit = tokens
        self._window_tokens += tokens
        if compat.will_accumulate(trainer):  # Lightning's own test for "no optimizer step after this"
            self._loss_weight = accumulate * tokens / self._token_unit
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:  # Σ_k<last (n_k / n_1) ∇mean_k  →  Σ_k<last n_k ∇mean_k / N
            compat.foreach_mul_(grads, self._token_unit / self._window_tokens)
        self._loss_weight = accumulate * tokens / self._window_tokens  # Lightning divides by K
        self._window_tokens = 0

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Backpropagate the training step's loss, weighted by its batch's tokens (`_weigh_by_tokens`)."""
        if self._loss_weight != 1.0:
            loss = loss * self._loss_weight
        super().backward(loss, *args, **kwargs)

    def on_train_start(self) -> None:
        self._window_tokens = 0

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # The gradient norm before clipping; a tensor, so logging it does not wait for the device.
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads), batch_size=1)
        # The LR this step applies. A float given to self.log is copied to the device with a host sync;
        # torch.full passes it to a kernel as an argument instead.
        lr = torch.full((), optimizer.param_groups[0]["lr"], device=self.device)
        self.log("train/lr", lr, batch_size=1)

    def translate(self, src: torch.Tensor, src_lengths: torch.Tensor) -> list[str]:
        """Decode a source batch with the configured strategy into detokenized strings."""
        hypotheses = self.decoding(self.model, src, src_lengths, SOS_ID, EOS_ID, PAD_ID)
        return [decode(self.target_tokenizer, ids) for ids in hypotheses.tokens.tolist()]

    def _evaluate(self, batch: Batch, metrics: Seq2SeqMetrics) -> None:
        logits = self.model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V), teacher-forced
        hypotheses = self.translate(batch.src, batch.src_lengths)
        metrics.update(logits, batch.tgt_out, PAD_ID, hypotheses, batch.tgt_text)
        # Batches made outside a split have no index: they keep the order they came in.
        start = len(self.predictions)
        indices = batch.index.tolist() if batch.index is not None else range(start, start + len(hypotheses))
        self.predictions.extend(map(Prediction, indices, batch.src_text, batch.tgt_text, hypotheses))

    def _log_metrics(self, metrics: Seq2SeqMetrics, prefix: str) -> None:
        # compute() has already synced the states across processes: every rank logs the same values.
        values = {f"{prefix}/{name}": value for name, value in metrics.compute().items()}
        self.log_dict(values, prog_bar=False)  # Lightning keeps float32 copies; self.results keeps the exact ones
        self.results.update(values)
        metrics.reset()

    def _collect_predictions(self) -> None:
        """Put the predictions in input order; under DDP, every rank gets all ranks' predictions first."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shards: list[list[Prediction]] = [[] for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather_object(shards, self.predictions)
            self.predictions = [prediction for shard in shards for prediction in shard]
        self.predictions.sort(key=lambda prediction: prediction.index)

    def on_validation_epoch_start(self) -> None:
        self.predictions = []

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")
        self._collect_predictions()

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")
        self._collect_predictions()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.lr_schedule is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": self.lr_schedule.lightning_config(optimizer, self.trainer)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_payload(checkpoint, config=self.config, tokenizers=self.tokenizers)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming a checkpoint of a run with weight averaging (``callbacks.ema``) without it: train on the raw
        weights (``current_model_state``), which the optimizer's moments belong to, not on their average."""
        averaging = any(isinstance(callback, WeightAveraging) for callback in self.trainer.callbacks)
        if "current_model_state" in checkpoint and self.trainer.state.fn == TrainerFn.FITTING and not averaging:
            checkpoint["state_dict"] = checkpoint["current_model_state"]
            log.info("resuming without callbacks.ema: training goes on from the raw weights, their average is dropped")
