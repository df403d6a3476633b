"""The fit skeleton every training pipeline shares (train, classify, and any third one).

A pipeline supplies what differs (model, data, callbacks, what it logs); the skeleton does what
must be the same for all of them:

- :func:`run_fit`: rank 0 (or a lone process) fits inside a tracked MLflow run that ends with an
  honest status; a data-parallel worker on another node fits the same plan untracked and
  leaves quietly when rank 0 is interrupted (:func:`run_as_worker`, also the body of
  ``python -m pipelines.ddp_worker``).
- :func:`fit_in_lockstep`: signals are deferred to a batch end, this node's DDP workers are
  started before the Trainer reads their environment and stopped with the fit, Lightning is
  kept off the signals under DDP, and a SIGTERM that Lightning saw is reported as the
  interruption it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from pipelines.common.callbacks import AgreeOnStop
from pipelines.common.ddp import is_worker_process, worker_processes, worker_run_id
from pipelines.common.interrupts import (
    RunInterrupted,
    StopOnSignal,
    deferred,
    interrupt_guard,
    keep_lightning_off_signals,
    pending_signal,
)
from pipelines.common.placement import Placement
from pipelines.tracking.logger import RunBoundLogger
from pipelines.tracking.outbox import TrackingOutbox
from pipelines.tracking.runs import PIPELINE_TAG, TrackedRun, tracked_run

Result = TypeVar("Result")
Then = TypeVar("Then")


def run_fit(
    pipeline: str,
    experiment: str,
    run_name: str,
    primary: Callable[[TrackedRun], Result],
    worker: Callable[[str], Result],
    tags: dict[str, str] | None = None,
    nested: bool = False,
    resume_run_id: str | None = None,
    failure_tags: dict[str, str] | None = None,
) -> Result:
    """``primary(run)`` inside a tracked run tagged ``ntmlab.pipeline=<pipeline>`` (system
    metrics on); in a DDP worker that a launcher or the user started (``torchrun``, another
    node), ``worker(run_id)`` of the run rank 0 opened, which should use :func:`run_as_worker`."""
    if is_worker_process():
        return worker(worker_run_id())
    run_tags = {PIPELINE_TAG: pipeline, **(tags or {})}
    with (
        interrupt_guard(),
        tracked_run(
            experiment,
            run_name,
            run_tags,
            nested,
            resume_run_id,
            system_metrics=True,
            failure_tags=failure_tags,
        ) as run,
    ):
        return primary(run)


def run_as_worker(fit: Callable[[], Result]) -> Result | None:
    """A data-parallel worker's fit (rank > 0): in lockstep with rank 0, which alone tracks,
    checkpoints and scores. An interruption is rank 0's to report: the worker returns None and
    its process exits 0."""
    with interrupt_guard():
        try:
            return fit()
        except RunInterrupted:
            return None


def run_logger(run_id: str, outbox: TrackingOutbox | None) -> RunBoundLogger | bool:
    """Lightning's logger bound to the run and its outbox; False (none) on a DDP worker."""
    return RunBoundLogger(run_id, outbox) if outbox is not None else False


@dataclass
class Fitted:
    """What a fit leaves: the trainer, its wall-clock in this process, and what ``then`` made."""

    trainer: pl.Trainer
    seconds: float
    then: Any = None


def fit_in_lockstep(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    placement: Placement,
    spec: dict,
    trainer_args: dict[str, Any],
    callbacks: Sequence[pl.Callback] = (),
    logger: RunBoundLogger | bool = False,
    ckpt_path: str | None = None,
    checkpoint_on_signal: Path | None = None,
    then: Callable[[pl.Trainer], Then] | None = None,
) -> Fitted:
    """Fit ``module`` beside this node's DDP workers (``spec``: what they run, see
    :func:`pipelines.common.ddp.worker_spec`); ``then(trainer)`` runs while the workers are still
    there (a test split that every process shares).

    ``trainer_args`` are the pipeline's ``pl.Trainer`` arguments; placement, logger and the
    callbacks every fit has are added here: :class:`StopOnSignal` first (it saves
    ``checkpoint_on_signal`` on an interruption), :class:`AgreeOnStop` last, after every callback
    that may stop the fit. Raises ``RunInterrupted`` for a signal, also one that came during
    the last validation.
    """
    every_fit = [StopOnSignal(checkpoint_on_signal), *callbacks, AgreeOnStop()]
    started = time.perf_counter()
    after = None
    with deferred(), worker_processes(placement, spec):  # workers before the Trainer reads env
        trainer = pl.Trainer(
            logger=logger, callbacks=every_fit, **placement.trainer_kwargs, **trainer_args
        )
        keep_lightning_off_signals(trainer)
        if logger:
            logger.use_steps_of(trainer)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except SIGTERMException:  # Lightning's own SIGTERM notifier, at a batch end
            raise RunInterrupted("SIGTERM") from None
        seconds = time.perf_counter() - started
        if then is not None:
            after = then(trainer)
    if pending_signal() is not None:  # the signal came during the last validation
        raise RunInterrupted(pending_signal())
    return Fitted(trainer, seconds, after)
