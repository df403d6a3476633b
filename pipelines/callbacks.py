"""Small Lightning callbacks the pipelines add to a fit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

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


class LogCurriculum(pl.Callback):
    """Log ``curriculum_max_len``, the longest training length (most items) the length
    curriculum allows at each step, so the MLflow UI shows where each start stands beside its
    training loss (a restart takes it back to the shortest range)."""

    def __init__(self, upper: Callable[[int], int]) -> None:
        self.upper = upper  # batch index -> the curriculum's longest length

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        trained = trainer.global_step - 1  # the optimizer has stepped for this batch
        module.log("curriculum_max_len", float(self.upper(trained)), batch_size=1)


class RecoverFromSetbacks(pl.Callback):
    """Two setbacks of NTM training, each with its remedy, decided on validation ``metric``.

    - **A relapse**: a validation above ``relapse_factor`` x the start's best + 1 (e.g. copy
      back at chance after 0.6 bits/seq). The weights of the start's best come back and the
      rate halves (``module.roll_back_to``); Adam keeps its moments, whose large second moments
      after the spike make the next steps small. ``relapse_factor`` 0 turns this off.
    - **A stall**: the start's best fell by less than ``min_improvement`` (relative) over its
      last ``patience`` validations, while it is above ``above``. Training starts
      again from the weights ``fresh_state(k)`` builds for restart k (a seed of its own), with
      a fresh optimizer and rate (``module.restart_from``). ``patience`` 0 turns this off.
      A start is not judged before it has trained ``grace_steps`` steps: under a length
      curriculum it trains on short episodes first, while validation covers the whole range,
      so its early validations say nothing about whether it will learn the task.

    The run's best checkpoint is kept across both, so neither can make the result worse.

    Why a stall restarts rather than K short starts scored early: an early score does not tell
    the seeds apart. Copy's seed 1 had the best first validation of ten seeds (1.06 bits/seq
    after 200 steps); then a loss spike threw it to 18, and it stalled at 1.86 while the
    plateau decay halved its rate to nothing (benchmarks/RESULTS.md, issue 22). Restarts cost
    nothing on the seeds that converge.

    Decisions are taken at validation end, after the metric is synced (every DDP process
    decides alike; rank 0's decision is broadcast all the same), and carried out before the
    next training batch, after that validation's checkpoints were written with the weights
    they scored.
    """

    def __init__(
        self,
        metric: str,
        above: float,
        patience: int,
        fresh_state: Callable[[int], dict],
        relapse_factor: float = 0.0,
        min_improvement: float = 0.01,
        grace_steps: int = 0,
    ) -> None:
        self.metric, self.above, self.patience = metric, above, patience
        self.fresh_state, self.relapse_factor = fresh_state, relapse_factor
        self.min_improvement, self.grace_steps = min_improvement, grace_steps
        self.restart_steps: list[int] = []
        self.rollback_steps: list[int] = []
        self._bests: list[float] = []  # the start's best after each of its validations
        self._best_state: dict | None = None  # the weights of the start's best
        self._pending: str | None = None  # "restart" or "rollback"

    @property
    def restarts(self) -> int:
        return len(self.restart_steps)

    @property
    def rollbacks(self) -> int:
        return len(self.rollback_steps)

    @property
    def start_step(self) -> int:
        """The global step the current start began (0 before any restart)."""
        return self.restart_steps[-1] if self.restart_steps else 0

    @property
    def _start_best(self) -> float:
        return self._bests[-1] if self._bests else math.inf

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        best = self._start_best
        decision = None
        if self.relapse_factor and value > self.relapse_factor * best + 1.0:
            decision = "rollback"
        elif value < best:
            if self.relapse_factor:
                self._best_state = {
                    k: v.detach().clone() for k, v in module.model.state_dict().items()
                }
            best = value
        self._bests.append(best)
        judged = not self.grace_steps or trainer.global_step - self.start_step >= self.grace_steps
        if self.patience and judged and self._stalled() and self._start_best > self.above:
            decision = "restart"
        if trainer.world_size > 1:
            decision = trainer.strategy.broadcast(decision, src=0)
        self._pending = decision

    def _stalled(self) -> bool:
        """The start's best fell by less than ``min_improvement`` over ``patience`` validations
        (a start's first validation counts as a fall from infinity)."""
        if len(self._bests) <= self.patience:
            return False
        return self._bests[-1] > (1.0 - self.min_improvement) * self._bests[-1 - self.patience]

    def on_train_batch_start(self, trainer: pl.Trainer, module, batch, batch_idx: int) -> None:
        if self._pending is None:
            return
        step = trainer.global_step
        if self._pending == "restart":
            self.restart_steps.append(step)
            module.restart_from(self.fresh_state(self.restarts))
            self._bests, self._best_state = [], None
            metric = {"restarts": self.restarts}
        else:
            self.rollback_steps.append(step)
            module.roll_back_to(self._best_state)
            metric = {"rollbacks": self.rollbacks}
        self._pending = None
        if trainer.logger:
            trainer.logger.log_metrics(metric, step=step)

    def state_dict(self) -> dict:
        return {
            "restart_steps": list(self.restart_steps),
            "rollback_steps": list(self.rollback_steps),
            "best_state": self._best_state,
            "bests": list(self._bests),
            "pending": self._pending,
        }

    def load_state_dict(self, state: dict) -> None:
        self.restart_steps = list(state["restart_steps"])
        self.rollback_steps = list(state["rollback_steps"])
        self._bests, self._best_state = list(state["bests"]), state["best_state"]
        self._pending = state["pending"]
