"""LightningModule shell for bit-sequence tasks: any ``inputs -> logits`` core trains here.

It owns the training recipe (masked BCE, optimizer, gradient clipping) and the metrics, and
nothing about a particular task or tracking backend.
"""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from models.metrics import BitErrorRate, masked_bce_loss, selection_score, wrong_bits_per_sequence

OPTIMIZERS = ("rmsprop", "adam")
CLIP_ALGORITHMS = ("norm", "value", "none")


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN/inf: stop loudly instead of training on garbage."""


class SequenceModule(pl.LightningModule):
    """Trains a sequence core on ``(inputs, targets, mask)`` batches.

    Args:
        model: a ``torch.nn.Module`` mapping ``[B,T,I]`` inputs to ``[B,T,O]`` logits.
        optimizer: ``rmsprop`` (with momentum, as in Graves et al. 2014) or ``adam``.
        lr: learning rate.
        momentum: RMSprop momentum (ignored by Adam).
        rmsprop_alpha: RMSprop smoothing constant.
        clip_algorithm: ``norm`` (global gradient norm), ``value`` (element-wise) or ``none``.
        clip_value: threshold for the chosen clipping.
        adam_eps: Adam's denominator floor. Once a task is solved the gradients, and with them
            Adam's second-moment estimate, shrink towards zero; a larger floor keeps the
            step of one unusual batch from blowing up.
        lr_decay_patience: halve the learning rate once more than this many validations in a
            row bring no new best ``val_bits_per_seq`` (0: constant rate).
        lr_decay_floor: the decay stops at this fraction of ``lr`` (0: no floor). A noisy
            validation error keeps triggering the decay long after the model stopped
            improving by noise alone; without a floor the LSTM's rate fell from 3e-3 to 3e-6
            on copy and its learning stopped with it.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Literal["rmsprop", "adam"] = "rmsprop",
        lr: float = 1e-4,
        momentum: float = 0.9,
        rmsprop_alpha: float = 0.95,
        clip_algorithm: Literal["norm", "value", "none"] = "norm",
        clip_value: float = 10.0,
        adam_eps: float = 1e-8,
        lr_decay_patience: int = 0,
        lr_decay_floor: float = 0.0,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
        if clip_algorithm not in CLIP_ALGORITHMS:
            raise ValueError(f"unknown clip_algorithm {clip_algorithm!r}; choose {CLIP_ALGORITHMS}")
        if not 0.0 <= lr_decay_floor <= 1.0:
            raise ValueError(f"lr_decay_floor must be in 0..1, got {lr_decay_floor}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        # metric states are summed over processes, so under DDP the scores cover the whole
        # validation set once and equal the single-process scores of the same weights
        self.val_errors = BitErrorRate()
        self.val_loss = MeanMetric()
        # the long validation set (second validation loader), when the data module has one
        self.long_errors = BitErrorRate()
        self.long_loss = MeanMetric()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, targets, mask = batch
        logits = self.model(inputs)
        loss = masked_bce_loss(logits, targets, mask)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}; "
                "lower the learning rate or tighten gradient clipping"
            )
        if self._logs_this_step():
            bits_per_seq = wrong_bits_per_sequence(logits, targets, mask).float().mean()
            batch_size = inputs.shape[0]
            self.log("train_loss", loss, prog_bar=True, batch_size=batch_size)
            self.log("train_bits_per_seq", bits_per_seq, prog_bar=True, batch_size=batch_size)
        return loss

    def _logs_this_step(self) -> bool:
        """Whether Lightning will write this step's training metrics to the loggers.

        ``self.log`` walks the whole result collection on every call, which costs a compiled
        step a few percent, though only every ``log_every_n_steps``-th value reaches a logger.
        Outside a fit (no trainer) every call logs, as ``self.log`` would.
        """
        trainer = self._trainer
        if trainer is None:
            return True
        return bool(trainer.fast_dev_run) or trainer._logger_connector.should_update_logs

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets, mask = batch
        logits = self.model(inputs)
        scored_bits = int(mask.sum()) * targets.shape[-1]
        loss = masked_bce_loss(logits, targets, mask)
        errors, losses = (self.val_errors, self.val_loss)
        if dataloader_idx == 1:
            errors, losses = (self.long_errors, self.long_loss)
        # weighting by scored bits makes the epoch value the mean over all scored bits
        losses.update(loss, weight=scored_bits)
        errors.update(logits, targets, mask)

    def on_validation_epoch_end(self) -> None:
        scores = self.val_errors.compute()
        loss = self.val_loss.compute()
        # already reduced over processes by the metrics, so every rank holds the same value
        # and sync_dist's mean of equal values changes nothing
        self.log("val_loss", loss.float(), sync_dist=True)
        self.log("val_bits_per_seq", scores["bits_per_seq"].float(), prog_bar=True, sync_dist=True)
        self.log("val_bit_acc", scores["bit_acc"].float(), sync_dist=True)
        long = {}
        if len(self.trainer.num_val_batches) > 1:  # the same on every rank
            long_scores, long_loss = self.long_errors.compute(), self.long_loss.compute()
            self.log("val_long_loss", long_loss.float(), sync_dist=True)
            self.log("val_long_bits_per_seq", long_scores["bits_per_seq"].float(), sync_dist=True)
            self.log("val_long_bit_acc", long_scores["bit_acc"].float(), sync_dist=True)
            long = {
                "long_bits_per_seq": long_scores["bits_per_seq"],
                "long_loss": long_loss,
                "long_sequences": long_scores["sequences"],
            }
        selection = selection_score(scores["bits_per_seq"], scores["sequences"], **long)
        self.log("val_selection", selection, sync_dist=True)  # what the best checkpoint keeps
        for metric in (self.val_errors, self.val_loss, self.long_errors, self.long_loss):
            metric.reset()
        if not self.trainer.sanity_checking and self.trainer.optimizers:
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "adam":
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, eps=hp.adam_eps)
        else:
            optimizer = torch.optim.RMSprop(
                self.parameters(), lr=hp.lr, momentum=hp.momentum, alpha=hp.rmsprop_alpha
            )
        if hp.lr_decay_patience <= 0:
            return optimizer
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=0.5,
            patience=hp.lr_decay_patience,
            min_lr=hp.lr * hp.lr_decay_floor,
        )
        schedule = {"scheduler": plateau, "monitor": "val_bits_per_seq", "interval": "epoch"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def restart_from(self, state: dict[str, torch.Tensor]) -> None:
        """Start training again from ``state`` (fresh weights for the core): the optimizer
        forgets its moments, the rate returns to ``lr`` and the plateau decay to its start.

        The weights are copied in place, so a compiled step keeps using them.
        """
        self.model.load_state_dict(state)
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()  # Adam/RMSprop build fresh moments at their next step
            for group in optimizer.param_groups:
                group["lr"] = self.hparams.lr
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.best, scheduler.num_bad_epochs = scheduler.mode_worse, 0
                scheduler.cooldown_counter = 0

    def roll_back_to(self, state: dict[str, torch.Tensor]) -> None:
        """Return to ``state`` (the weights of an earlier best) at half the rate: the rate
        that let a spike throw the run back was too high for where the run had got to. The
        optimizer keeps its moments; after a spike their large second moments keep the next
        steps small."""
        self.model.load_state_dict(state)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] /= 2

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        """Clip with the module's own recipe so a checkpoint carries how it was trained."""
        hp = self.hparams
        if hp.clip_algorithm != "none":
            self.clip_gradients(
                optimizer,
                gradient_clip_val=hp.clip_value,
                gradient_clip_algorithm=hp.clip_algorithm,
            )
