"""LightningModule shell for classifiers: cross-entropy, Adam, accuracy, and the per-layer
gradient norms the unfolded-LSTM study is about."""

from __future__ import annotations

from itertools import islice

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from models.batch_norm import estimate_population_statistics
from models.sequence_module import NonFiniteLossError

LR_SCHEDULES = ("constant", "cosine")


def layer_gradient_norms(model: nn.Module) -> list[float]:
    """L2 norm of the gradient of each layer's weight matrix, input layer first.

    With tied weights the later layers share one matrix, whose gradient is the sum over the
    layers; it is reported once per layer that uses it.
    """
    norms = []
    for weight in model.layer_weights():
        grad = weight.grad
        norms.append(float(grad.norm()) if grad is not None else 0.0)
    return norms


class ClassifierModule(pl.LightningModule):
    """Trains any ``inputs -> logits`` classifier; logs ``grad_norm/layer_<i>`` every
    ``grad_norm_every`` steps when the core exposes ``layer_weights()``.

    Before every validation and test, a core with ``StepwiseBatchNorm`` layers gets population
    statistics averaged over ``population_batches`` training batches (0: keep the running
    averages); see :func:`estimate_population_statistics` for why.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        lr_schedule: str = "constant",
        weight_decay: float = 0.0,
        clip_value: float = 1.0,
        grad_norm_every: int = 50,
        population_batches: int = 50,
    ) -> None:
        super().__init__()
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}; choose one of {LR_SCHEDULES}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.grad_norm_history: list[tuple[int, list[float]]] = []
        # sums over batches and processes: under DDP the scores cover each image once and
        # equal one process's scores of the same model
        self.scores = nn.ModuleDict(
            {
                f"{split}_{name}": MeanMetric()
                for split in ("val", "test")
                for name in ("loss", "acc")
            }
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        logits = self.model(inputs)
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss at step {self.global_step}")
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc", accuracy)
        return loss

    def on_after_backward(self) -> None:
        every = self.hparams.grad_norm_every
        if not hasattr(self.model, "layer_weights") or every <= 0 or self.global_step % every:
            return
        norms = layer_gradient_norms(self.model)
        self.grad_norm_history.append((self.global_step, norms))
        if self.logger is not None:
            # Straight to the logger: ``self.log`` would hold the value until Lightning's own
            # flush (every ``log_every_n_steps`` batches, one step later), so steps shifted and
            # values computed off its rhythm were dropped.
            metrics = {f"grad_norm/layer_{i}": norm for i, norm in enumerate(norms, start=1)}
            self.logger.log_metrics(metrics, step=self.global_step)

    def _evaluate(self, batch, prefix: str) -> None:
        inputs, labels = batch
        logits = self.model(inputs)
        loss, acc = self.scores[f"{prefix}_loss"], self.scores[f"{prefix}_acc"]
        loss.update(F.cross_entropy(logits, labels), weight=labels.shape[0])
        acc.update((logits.argmax(dim=1) == labels).float())
        self.log(f"{prefix}_loss", loss, prog_bar=prefix == "val")
        self.log(f"{prefix}_acc", acc, prog_bar=prefix == "val")

    def _estimate_population_statistics(self) -> None:
        count = self.hparams.population_batches
        datamodule = getattr(self.trainer, "datamodule", None)
        if not count or datamodule is None:
            return
        # the same batches in every process (when the data offers such a loader), so every
        # process's eval model is the same under DDP
        loader = getattr(datamodule, "estimation_dataloader", datamodule.train_dataloader)
        batches = islice(loader(), count)
        estimate_population_statistics(self.model, (x.to(self.device) for x, _ in batches))

    def on_validation_epoch_start(self) -> None:
        self._estimate_population_statistics()

    def on_test_epoch_start(self) -> None:
        self._estimate_population_statistics()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.lr_schedule == "constant":
            return optimizer
        # per step, over the steps the trainer will run (epochs or max_steps, whichever ends it)
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        if self.hparams.clip_value > 0:
            self.clip_gradients(optimizer, self.hparams.clip_value, "norm")
