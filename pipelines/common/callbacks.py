"""Small Lightning callbacks that any pipeline's fit can use."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class StopAtThreshold(pl.Callback):
    """Stop training once a validation metric reaches ``threshold`` and remember when.

    ``reached_at`` holds ``(global_step, seconds since fit start)`` of the first validation
    that met the threshold, so a benchmark can report time and sequences to converge.
    """

    def __init__(self, metric: str, threshold: float, mode: str = "min") -> None:
        self.metric, self.threshold, self.mode = metric, threshold, mode
        self.reached_at: tuple[int, float] | None = None
        self._started = 0.0

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None or self.reached_at is not None:
            return
        value = float(value)
        if value <= self.threshold if self.mode == "min" else value >= self.threshold:
            self.reached_at = (trainer.global_step, time.perf_counter() - self._started)
            trainer.should_stop = True


class AlignLoggingStepOnResume(pl.Callback):
    """Re-align Lightning's logging counter with the global step after a checkpoint restore.

    Lightning counts logged batches separately (``_batches_that_stepped``) and saves that count
    before the checkpointing batch is added to it, so a resumed fit logs one step late and
    decides ``log_every_n_steps`` one batch off. Without gradient accumulation (this project
    never accumulates) the two counts are equal by definition.
    """

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        # after Lightning's own restart bookkeeping (the epoch loop's reset); a no-op otherwise
        trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step


class RecordInCheckpoint(pl.Callback):
    """Store ``payload`` under ``key`` in every checkpoint, so a checkpoint file alone says how
    to rebuild its model (the evaluate pipeline reads it)."""

    def __init__(self, key: str, payload: dict) -> None:
        self.key, self.payload = key, payload

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        checkpoint[self.key] = self.payload


class AgreeOnStop(pl.Callback):
    """Under DDP, stop every process when any callback of any process asked to.

    Lightning's loops do not reduce ``trainer.should_stop``: a pruning decision made only on
    rank 0 (the Optuna trial lives there) would leave the workers in the next all-reduce.
    Placed after the callbacks that may stop the fit; one boolean all-reduce per validation.
    """

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.world_size > 1 and not trainer.sanity_checking:
            trainer.should_stop = trainer.strategy.reduce_boolean_decision(
                bool(trainer.should_stop), all=False
            )


class FirstStepTimer(pl.Callback):
    """Seconds of this session's first training batch: with ``--compile`` it holds the
    compile, the cost a user waits for before the fused step runs."""

    def __init__(self) -> None:
        self.seconds: float | None = None
        self._started: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self.seconds is None and self._started is None:
            self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.seconds is None and self._started is not None:
            self.seconds = time.perf_counter() - self._started
