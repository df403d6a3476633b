"""Recovering from the setbacks of NTM training: a relapse rolls back, a stall restarts.

:class:`RecoverFromSetbacks` decides at each validation; :func:`setback_rules` builds it from a
train config (its recipe), or returns None when both remedies are off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import pytorch_lightning as pl

from datamodules.tasks import SyntheticTask
from pipelines.sequence.build import curriculum_of, fresh_core_state
from pipelines.sequence.config import TrainConfig


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
    the seeds apart (docs/models.md, "Recovering from setbacks"), and restarts cost nothing on
    the seeds that converge.

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


def setback_rules(
    config: TrainConfig, task: SyntheticTask, metric: str
) -> RecoverFromSetbacks | None:
    """The rules that roll back a relapse and restart a stall, or None when both are off.
    A start is judged only once its curriculum (if any) reaches the task's whole range."""
    trainer, data = config.trainer, config.data
    if not (trainer.restart_patience or trainer.relapse_factor):
        return None
    curriculum = curriculum_of(data)
    grace = curriculum.steps_to_full_range(data.min_len, data.max_len) if curriculum else 0
    return RecoverFromSetbacks(
        metric,
        above=trainer.restart_above,
        patience=trainer.restart_patience,
        fresh_state=partial(fresh_core_state, config, task),
        relapse_factor=trainer.relapse_factor,
        min_improvement=trainer.restart_min_improvement,
        grace_steps=grace,
    )
