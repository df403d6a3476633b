"""Optuna pruning for ``pytorch_lightning`` (optuna-integration's callback imports only
``lightning.pytorch``), plus the best value of the searched metric over a trial and its state
as a tag of the trial's run."""

from __future__ import annotations

import optuna
import pytorch_lightning as pl

TRIAL_STATE_TAG = "optuna.trial_state"


class TagTrialState(pl.Callback):
    """Tags the trial's run, at the end of training, with the state its objective will give
    the trial, through the run's outbox (rank 0's logger): a tracking outage delays the tag
    instead of stalling the study. COMPLETE once a validation ran, else FAIL."""

    def __init__(self) -> None:
        self.validated = False

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.validated = self.validated or not trainer.sanity_checking

    @property
    def state(self) -> str:
        return "COMPLETE" if self.validated else "FAIL"

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        outbox = getattr(trainer.logger, "outbox", None)  # rank 0 only
        if outbox is not None:
            outbox.set_tags({TRIAL_STATE_TAG: self.state})


class OptunaPruning(TagTrialState):
    """Reports ``metric`` at every validation (step = global step) and stops a pruned trial.

    Stopping via ``trainer.should_stop`` instead of raising inside the fit lets the train
    pipeline end its run cleanly (checkpoints, model, FINISHED); the objective then raises
    ``optuna.TrialPruned`` so the trial is recorded as PRUNED (and tagged so).
    """

    def __init__(self, trial: optuna.Trial, metric: str, direction: str) -> None:
        super().__init__()
        self.trial, self.metric = trial, metric
        self.maximize = direction == "maximize"
        self.best: float | None = None
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, module)
        if trainer.sanity_checking:
            return
        if self.metric not in trainer.callback_metrics:
            logged = ", ".join(sorted(trainer.callback_metrics))
            raise KeyError(f"metric {self.metric!r} is not logged at validation (logged: {logged})")
        value = float(trainer.callback_metrics[self.metric])
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value
        step = trainer.global_step
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned_at = step
            trainer.should_stop = True

    @property
    def state(self) -> str:
        """PRUNED, COMPLETE, or FAIL for a trial that never validated (its objective raises)."""
        return "PRUNED" if self.pruned_at is not None else super().state
