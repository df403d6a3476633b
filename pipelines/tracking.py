"""Binding pipelines to MLflow: which store, which run, and how a run ends.

A pipeline either continues the run that ``mlflow run`` started (``MLFLOW_RUN_ID``) or starts
its own in the task's experiment. Whatever happens inside, the run never stays RUNNING:
FINISHED on success, KILLED on Ctrl-C, FAILED (with an ``error`` tag) on any other exception.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from pipelines.interrupts import RunInterrupted

if TYPE_CHECKING:
    from pipelines.outbox import TrackingOutbox

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_ID_ENV = "MLFLOW_RUN_ID"
HOME_ENV = "NTMLAB_HOME"
ERROR_TAG = "error"
RESUMED_INTO_TAG = "ntmlab.resumed_into"
REACHABILITY_TIMEOUT_S = 5.0


class TrackingUnavailable(RuntimeError):
    """The tracking server does not answer; raised before anything is started."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's ``sqlite:///<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def run_dir(run_id: str) -> Path:
    """Local working directory of one run: checkpoints, buffered logging (``$NTMLAB_HOME``)."""
    home = Path(os.environ.get(HOME_ENV) or PROJECT_ROOT / ".ntmlab")
    return home / "runs" / run_id


def check_reachable(uri: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> None:
    """Fail in seconds, with the URI in the message, when an HTTP tracking server is down.

    MLflow's client would otherwise retry for minutes before saying anything.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.RequestException as error:
        reason = type(error).__name__
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({reason} within {timeout_s:g} s); "
            "start it (make server) or point MLFLOW_TRACKING_URI at a running one"
        ) from None


def _local_artifact_root(uri: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database (not in the cwd)."""
    match = re.fullmatch(r"sqlite:///(.+)", uri)
    if not match:
        return None
    return (Path(match.group(1)).resolve().parent / "mlartifacts").as_uri()


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a local db) when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = _local_artifact_root(client.tracking_uri)
    location = f"{root}/{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}" if root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id  # another worker made it


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:4000]


@contextmanager
def tracked_run(
    experiment_name: str,
    run_name: str,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    resume_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open (or continue) a run and guarantee it ends with an honest status.

    The run is named ``<run_name>-<first 8 chars of its id>``. Its id is exported as
    ``MLFLOW_RUN_ID`` so worker processes (e.g. DDP ranks) bind to the same run. With
    ``resume_run_id`` the pipeline reopens that run; a run ``mlflow run`` started for the
    resume is tagged with where the work went and left to ``mlflow run`` to end.
    """
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    inherited = os.environ.get(RUN_ID_ENV) if not nested else None
    if resume_run_id:
        if inherited and inherited != resume_run_id:
            client.set_tag(inherited, RESUMED_INTO_TAG, resume_run_id)
            client.set_tag(inherited, "mlflow.runName", f"resume-of-{resume_run_id[:8]}")
        run = mlflow.start_run(run_id=resume_run_id)
        mlflow.set_tags(tags or {})
    elif inherited:
        run = mlflow.start_run(run_id=inherited)
    else:
        parent = mlflow.active_run() if nested else None
        # a child lives in its parent's experiment, whichever experiment `mlflow run` chose
        experiment_id = (
            parent.info.experiment_id if parent else ensure_experiment(client, experiment_name)
        )
        # mlflow.start_run adopts (and deletes) MLFLOW_RUN_ID; a child must not adopt its parent
        hidden = os.environ.pop(RUN_ID_ENV, None) if nested else None
        try:
            run = mlflow.start_run(experiment_id=experiment_id, nested=nested)
        finally:
            if hidden is not None:
                os.environ[RUN_ID_ENV] = hidden
    run_id = run.info.run_id
    if not resume_run_id:
        mlflow.set_tags({"mlflow.runName": f"{run_name}-{run_id[:8]}", **(tags or {})})
    previous_env = os.environ.get(RUN_ID_ENV)
    if not nested:
        os.environ[RUN_ID_ENV] = run_id
    try:
        yield run
    except (KeyboardInterrupt, RunInterrupted) as error:
        mlflow.set_tag(ERROR_TAG, str(error) or "interrupted by the user")
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as error:
        mlflow.set_tag(ERROR_TAG, _error_text(error))
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")
    finally:
        if not nested:
            if previous_env is None:
                os.environ.pop(RUN_ID_ENV, None)
            else:
                os.environ[RUN_ID_ENV] = previous_env


def fail_inherited_run(message: str) -> None:
    """End the run ``mlflow run`` started as FAILED (used when input is rejected up front)."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id:
        return
    try:
        client = MlflowClient(tracking_uri())
        client.set_tag(run_id, ERROR_TAG, message[:4000])
        client.set_terminated(run_id, status="FAILED")
    except Exception as error:  # the message to the user matters more than the tag
        print(f"warning: could not mark run {run_id} FAILED: {error}", file=sys.stderr)


class RunBoundLogger(MLFlowLogger):
    """An MLFlowLogger that logs into an existing run and leaves ending it to the pipeline.

    Lightning's logger terminates the run in ``finalize``; the pipeline still logs the model,
    figures and test metrics after ``fit``, and owns the final status.
    """

    def __init__(self, run_id: str, outbox: TrackingOutbox) -> None:
        client = MlflowClient(tracking_uri())
        experiment_id = client.get_run(run_id).info.experiment_id
        super().__init__(
            experiment_name=client.get_experiment(experiment_id).name,
            tracking_uri=tracking_uri(),
            run_id=run_id,
            log_model=False,
        )
        self.outbox = outbox
        self._trainer: Any = None

    def use_steps_of(self, trainer: Any) -> None:
        """Log at the trainer's ``global_step`` (optimizer steps done).

        Lightning's own logger step lags it by one at an epoch's end and not after a resume, so
        a resumed run would shift its axis; the global step is restored exactly.
        """
        self._trainer = trainer

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Through the outbox: a tracking outage delays these, never loses or blocks them."""
        if self._trainer is not None:
            step = self._trainer.global_step
        self.outbox.log_metrics(metrics, step or 0)

    def finalize(self, status: str = "success") -> None:
        """Leave the run open; the pipeline ends it."""

    def log_hyperparams(self, params: Any) -> None:
        """Params are logged once, flattened, by the pipeline."""
