"""Binding pipelines to MLflow runs: which run, and how it ends.

A pipeline either continues the run that ``mlflow run`` started (``MLFLOW_RUN_ID``) or starts
its own in the task's experiment. A run ``mlflow run`` put in the store's default experiment
(no ``--experiment-name``) is continued in the task's experiment instead, and the stub left
behind points there. Whatever happens inside, the run never stays RUNNING: FINISHED on
success, KILLED on Ctrl-C, FAILED (with an ``error`` tag) on any other exception, delivered
through the run's outbox so a tracking outage at that moment delays the status, never loses it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

from pipelines.common.interrupts import RunInterrupted
from pipelines.tracking.outbox import WORKER_SPOOLS, TrackingOutbox
from pipelines.tracking.store import (
    DEFAULT_EXPERIMENT_ID,
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    TrackingRejected,
    check_reachable,
    ensure_experiment,
    is_http,
    run_dir,
    run_link,
    tracking_uri,
)
from pipelines.tracking.system_metrics import SystemMetricsSampler
from pipelines.tracking.transport import transport_for

RUN_ID_ENV = "MLFLOW_RUN_ID"
# a pipeline that runs another in a child process (a seed study) names the parent run here
PARENT_RUN_ENV = "NTMLAB_PARENT_RUN_ID"
PIPELINE_TAG = "ntmlab.pipeline"  # which pipeline made a run
ERROR_TAG = "error"
RESUMED_INTO_TAG = "ntmlab.resumed_into"
MOVED_TO_TAG = "ntmlab.moved_to"
UPLOAD_TIMEOUT_S = 120.0  # how long the end of a run waits for a tracking server to come back
FAILURE_UPLOAD_TIMEOUT_S = 10.0


@dataclass
class TrackedRun:
    """An open run: its ids, and the outbox everything logged into it goes through."""

    run_id: str
    experiment_id: str
    outbox: TrackingOutbox
    client: MlflowClient

    def describe(self, text: str) -> None:
        """The run's description in the UI (markdown)."""
        self.outbox.set_tags({MLFLOW_RUN_NOTE: text})

    @property
    def link(self) -> str:
        """The run in the MLflow UI (``make ui`` for a local store)."""
        return run_link(self.client.tracking_uri, self.experiment_id, self.run_id)

    def report(self, pipeline: str, table: str) -> None:
        """A table as the run's description and on stdout, with where to see the run: what a
        pipeline that ends with a table tells the user at the terminal."""
        self.describe(table)
        where = "" if is_http(self.client.tracking_uri) else " (make ui)"
        print(f"{table.rstrip()}\n\n{pipeline}: run {self.run_id}: {self.link}{where}", flush=True)


_open_runs: list[TrackedRun] = []


def active_run() -> TrackedRun | None:
    """The innermost run this process has open (a nested run's parent)."""
    return _open_runs[-1] if _open_runs else None


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:4000]


def _redirect_stub(client: MlflowClient, stub_id: str, run_id: str, how: str, tag: str) -> None:
    """Leave the run ``mlflow run`` made pointing at the run the work went into."""
    client.set_tag(stub_id, tag, run_id)
    client.set_tag(stub_id, MLFLOW_RUN_NAME, f"{how}-{run_id[:8]}")
    client.set_tag(stub_id, MLFLOW_RUN_NOTE, f"The work of this `mlflow run` is in run {run_id}.")


def _open(
    client: MlflowClient,
    experiment_name: str,
    run_name: str,
    tags: dict[str, str],
    nested: bool,
    resume_run_id: str | None,
) -> tuple[str, str, bool]:
    """(run id, experiment id, whether its name is already set) of the run to log into."""
    inherited = os.environ.get(RUN_ID_ENV) if not nested else None
    if resume_run_id:
        if inherited and inherited != resume_run_id:
            _redirect_stub(client, inherited, resume_run_id, "resume-of", RESUMED_INTO_TAG)
        client.update_run(resume_run_id, status="RUNNING")
        return resume_run_id, client.get_run(resume_run_id).info.experiment_id, True
    stub_params: dict[str, str] = {}
    if inherited:
        run = client.get_run(inherited)
        if run.info.experiment_id != DEFAULT_EXPERIMENT_ID:
            return inherited, run.info.experiment_id, False
        stub_params = run.data.params  # `mlflow run`'s -P values, copied to the real run
    parent = active_run() if nested else None
    parent_id = parent.run_id if parent else os.environ.get(PARENT_RUN_ENV) or None
    # a child lives in its parent's experiment, whichever experiment `mlflow run` chose
    if parent_id is not None:
        experiment_id = (
            parent.experiment_id if parent else client.get_run(parent_id).info.experiment_id
        )
    else:
        experiment_id = ensure_experiment(client, experiment_name)
    run_tags = resolve_tags(tags)
    if parent_id is not None:
        run_tags[MLFLOW_PARENT_RUN_ID] = parent_id
    run = client.create_run(experiment_id, tags=run_tags)
    run_id = run.info.run_id
    if inherited:
        _redirect_stub(client, inherited, run_id, f"moved-to-{experiment_name}", MOVED_TO_TAG)
        default = client.get_experiment(DEFAULT_EXPERIMENT_ID)
        if default.tags.get(EXPERIMENT_KIND_TAG) is None:
            client.set_experiment_tag(
                DEFAULT_EXPERIMENT_ID, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
            )
        if stub_params:
            client.log_batch(run_id, params=[Param(k, v) for k, v in stub_params.items()])
    return run_id, experiment_id, False


@contextmanager
def tracked_run(
    experiment_name: str,
    run_name: str,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    resume_run_id: str | None = None,
    system_metrics: bool = False,
    shared: bool = False,
    failure_tags: dict[str, str] | None = None,
) -> Iterator[TrackedRun]:
    """Open (or continue) a run and guarantee it ends with an honest status.

    The run is named ``<run_name>-<first 8 chars of its id>``. With ``resume_run_id`` the
    pipeline reopens that run; a run ``mlflow run`` started for the resume is tagged with where
    the work went and left to ``mlflow run`` to end. ``system_metrics`` samples the machine
    (``system/...``) while the run is open. On success, once everything is delivered, the run's
    local directory (checkpoints, spool) is removed: the artifacts hold it all. A ``shared`` run
    (an HPO study's parent, which several workers on one machine hold open at once) spools
    into a directory of this process's own and removes only that. ``failure_tags`` (e.g. an
    Optuna trial's state) are set, through the outbox like the status, when the run does not
    finish.
    """
    uri = tracking_uri()
    check_reachable(uri)
    client = MlflowClient(uri)
    tags = dict(tags or {})
    run_id, experiment_id, named = _open(
        client, experiment_name, run_name, tags, nested, resume_run_id
    )
    spool = worker_spool_dir(run_id) if shared else run_dir(run_id)
    outbox = TrackingOutbox(run_id, transport_for(uri, client), spool_dir=spool)
    outbox.set_tags({**tags, **({} if named else {MLFLOW_RUN_NAME: f"{run_name}-{run_id[:8]}"})})
    run = TrackedRun(run_id, experiment_id, outbox, client)
    sampler = SystemMetricsSampler(outbox, client, resume=bool(resume_run_id))
    if system_metrics:
        sampler.start()
    _open_runs.append(run)
    status, timeout_s = RunStatus.to_string(RunStatus.FINISHED), UPLOAD_TIMEOUT_S
    failure_tags = failure_tags or {}
    try:
        yield run
    except (KeyboardInterrupt, RunInterrupted) as error:
        outbox.set_tags({**failure_tags, ERROR_TAG: str(error) or "interrupted by the user"})
        status, timeout_s = RunStatus.to_string(RunStatus.KILLED), FAILURE_UPLOAD_TIMEOUT_S
        raise
    except BaseException as error:
        outbox.set_tags({**failure_tags, ERROR_TAG: _error_text(error)})
        status, timeout_s = RunStatus.to_string(RunStatus.FAILED), FAILURE_UPLOAD_TIMEOUT_S
        raise
    finally:
        _open_runs.remove(run)
        sampler.stop()
        rejected = list(outbox.rejected)
        if rejected and status == "FINISHED":  # finished, but not everything it logged is there
            refused = f"the tracking store rejected: {rejected[0]}"[:4000]
            outbox.set_tags({**failure_tags, ERROR_TAG: refused})
            status = RunStatus.to_string(RunStatus.FAILED)
        outbox.end_run(status)
        delivered = outbox.close(timeout_s=timeout_s)
        if delivered and status == "FINISHED":
            shutil.rmtree(spool, ignore_errors=True)
    if rejected:
        raise TrackingRejected(
            f"the tracking store rejected {len(rejected)} of run {run_id}'s items "
            f"({rejected[0]}); the run ended FAILED"
        )


def worker_spool_dir(run_id: str) -> Path:
    """This process's spool for a run other processes may hold open too (see ``shared``)."""
    return run_dir(run_id) / WORKER_SPOOLS / f"{socket.gethostname()}-{os.getpid()}"


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
