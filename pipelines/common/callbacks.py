"""Small Lightning callbacks that any pipeline's fit can use."""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint


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


class FitClock(pl.Callback):
    """Where this session's fit time goes: seconds inside training batches (forward, backward,
    optimizer) and inside validation loops (the sets' forward passes and their metrics, before
    the checkpoints and figures that follow a validation). The rest of ``train_time_s`` is
    Lightning's loop, checkpoints, figures and logging, which the pipeline times apart.

    ``first_step_seconds`` is the session's first training batch: with ``--compile`` it holds
    the compile, the cost a user waits for before the fused step runs."""

    def __init__(self) -> None:
        self.step_seconds = 0.0
        self.validation_seconds = 0.0
        self.first_step_seconds: float | None = None
        self._started: float | None = None

    def _start(self) -> None:
        self._started = time.perf_counter()

    def _stop(self) -> float:
        if self._started is None:
            return 0.0
        elapsed, self._started = time.perf_counter() - self._started, None
        return elapsed

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._start()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        elapsed = self._stop()
        self.step_seconds += elapsed
        if self.first_step_seconds is None:
            self.first_step_seconds = elapsed

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.validation_seconds += self._stop()


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` at every validation and at the end of training, whatever the monitor did.

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only at a
    validation where it also saved a top-k checkpoint, so a run on a plateau kept its last
    *best* as "last" and a resume lost every step since. Lightning runs every ``Checkpoint``
    after the other callbacks, in list order, so put this after the best checkpoint: the state
    it saves then holds the best checkpoint's decision of the same validation.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.saved_at: int | None = None

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.sanity_checking or self.saved_at == trainer.global_step:
            return
        trainer.save_checkpoint(self.path)
        self.saved_at = trainer.global_step

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._save(trainer)


class BestCheckpoint(ModelCheckpoint):
    """The best checkpoint by ``monitor``, saved under the state key of ``legacy_monitor``.

    Lightning finds a callback's state in a checkpoint by a key built from its monitor; keeping
    the key of the metric it monitored before lets a run checkpointed then resume with its
    best score (the two metrics share a scale) instead of taking its next validation as best.
    """

    def __init__(self, *args, legacy_monitor: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.legacy_monitor = legacy_monitor

    @property
    def state_key(self) -> str:
        settings = {
            "monitor": self.legacy_monitor,
            "mode": self.mode,
            "every_n_train_steps": self._every_n_train_steps,
            "every_n_epochs": self._every_n_epochs,
            "train_time_interval": self._train_time_interval,
        }
        return f"{ModelCheckpoint.__qualname__}{settings!r}"  # as ModelCheckpoint spells it
