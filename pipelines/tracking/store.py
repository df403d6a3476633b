"""Which tracking store a pipeline talks to, where a run keeps local files, and experiments.

The store is ``MLFLOW_TRACKING_URI`` or the project's ``sqlite:///<root>/mlflow.db``. An
experiment the project creates keeps its artifacts beside a local database (not in the cwd) and
carries the tag that makes MLflow's UI open it as model training rather than GenAI.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOME_ENV = "NTMLAB_HOME"
REACHABILITY_TIMEOUT_S = 5.0
# read by the UI bundled with MLflow 3.17 (server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
DEFAULT_EXPERIMENT_ID = "0"
# where MLflow's sqlite client store puts experiments created without a location (``Default``
# included) instead of ./mlruns of the current directory; MLflow reads it when it opens a store
ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"


class TrackingUnavailable(RuntimeError):
    """The tracking server does not answer; raised before anything is started."""


class TrackingRejected(RuntimeError):
    """The store refused some of a run's logging for good (the run ended FAILED, saying what)."""


_artifact_root_set: str | None = None  # the value this process put in ARTIFACT_ROOT_ENV


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's ``sqlite:///<root>/mlflow.db``.

    For a local sqlite store, every experiment MLflow creates without a location (the
    ``Default`` experiment of a fresh store included) then keeps its artifacts beside the
    database, wherever the process runs, unless the user set that root.
    """
    global _artifact_root_set
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    root = _local_artifact_root(uri)
    ours = os.environ.get(ARTIFACT_ROOT_ENV) in (None, _artifact_root_set)
    if root is not None and ours:
        os.environ[ARTIFACT_ROOT_ENV] = _artifact_root_set = root
    return uri


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def run_dir(run_id: str) -> Path:
    """Local working directory of one run: checkpoints, buffered logging (``$NTMLAB_HOME``)."""
    home = Path(os.environ.get(HOME_ENV) or PROJECT_ROOT / ".ntmlab")
    return home / "runs" / run_id


UI_PORT_ENV = "UI_PORT"  # the port `make ui` serves a local store on


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where the run opens in the MLflow UI: on the server itself, or for a local store on the
    UI that ``make ui`` starts."""
    if is_http(uri):
        base = uri.rstrip("/")
    else:
        base = f"http://127.0.0.1:{os.environ.get(UI_PORT_ENV) or 5000}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def check_reachable(uri: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> None:
    """Fail in seconds, with the URI in the message, when an HTTP tracking server is down.

    MLflow's client would otherwise retry for minutes before saying anything.
    """
    if not is_http(uri):
        return
    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.RequestException as error:
        reason = type(error).__name__
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({reason} within {timeout_s:g} s); "
            "start it (make server) or point MLFLOW_TRACKING_URI at a running one"
        ) from None


def reachable(uri: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Whether the store answers now, known within ``timeout_s`` (a database store: always)."""
    try:
        check_reachable(uri, timeout_s)
    except TrackingUnavailable:
        return False
    return True


def wait_until_reachable(uri: str, what: str, max_delay_s: float = 30.0, sleep=time.sleep) -> None:
    """Before work that cannot start without the store (opening a run, registering), wait
    for it with backoff, saying once on stderr what waits, instead of entering MLflow's
    minutes-long retries."""
    delay = 1.0
    while not reachable(uri):
        if delay == 1.0:
            print(f"tracking: {uri} unreachable; {what} waits for it", file=sys.stderr)
        time.sleep(delay)
        delay = min(2 * delay, max_delay_s)
    if delay > 1.0:
        print(f"tracking: {uri} reachable again; {what}", file=sys.stderr)


def _local_artifact_root(uri: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database (not in the cwd)."""
    match = re.fullmatch(r"sqlite:///(.+)", uri)
    if not match:
        return None
    return (Path(match.group(1)).resolve().parent / "mlartifacts").as_uri()


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing, tagged as model training."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = _local_artifact_root(client.tracking_uri)
        location = f"{root}/{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}" if root else None
        try:
            experiment_id = client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)  # another worker made it
        else:
            return experiment_id
    if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:  # made by an older version or by hand
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id
