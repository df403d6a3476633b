"""What resuming an interrupted run needs, gathered and checked before anything starts.

A resumable run records its config (``config/train_config.json``) when it starts and mirrors
its checkpoints to ``checkpoints/``; this machine keeps them in the run's local directory too.
The local copy is preferred (it is written atomically, the artifact is a copy of it); a missing
one is downloaded, so a run can be resumed on another machine that shares the tracking server.
The recorded config comes back as the dict it was saved as: the pipeline rebuilds its schema.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.common.atomic_files import atomic_write
from pipelines.common.config import ConfigError
from pipelines.tracking.checkpoints import load_checkpoint
from pipelines.tracking.runs import PIPELINE_TAG
from pipelines.tracking.store import check_reachable, run_dir, tracking_uri

CONFIG_ARTIFACT = "config/train_config.json"
CHECKPOINT_ARTIFACT_DIR = "checkpoints"
LAST, BEST = "last.ckpt", "best.ckpt"


@dataclass
class ResumePoint:
    config: dict[str, Any]  # as the run recorded it
    checkpoint: Path
    logged_through: dict[str, int] = field(default_factory=dict)


def checkpoint_dir(run_id: str) -> Path:
    return run_dir(run_id) / "checkpoints"


def _download(client: MlflowClient, run_id: str, artifact: str, target: Path) -> bool:
    """Fetch one artifact to ``target`` (atomically); False when the run has no such file."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, artifact, tmp))
        except (MlflowException, OSError):
            return False
        with open(local, "rb") as source:
            atomic_write(target, lambda stream: shutil.copyfileobj(source, stream))
    return True


def prepare_resume(run_id: str, pipeline: str) -> ResumePoint:
    """Config, checkpoint and logged metric steps of ``run_id``, a run of ``pipeline`` (its
    ``ntmlab.pipeline`` tag); ``ConfigError`` if unusable."""
    uri = tracking_uri()
    check_reachable(uri)
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--resume_run_id: no run {run_id!r} in {uri}") from None
    if run.data.tags.get(PIPELINE_TAG) != pipeline:
        raise ConfigError(f"--resume_run_id: run {run_id} is not a {pipeline} run")

    with tempfile.TemporaryDirectory() as tmp:
        recorded = Path(tmp) / "config.json"
        if not _download(client, run_id, CONFIG_ARTIFACT, recorded):
            raise ConfigError(f"--resume_run_id: run {run_id} recorded no {CONFIG_ARTIFACT}")
        config = json.loads(recorded.read_text())

    directory = checkpoint_dir(run_id)
    for name in (LAST, BEST):
        if not (directory / name).is_file():
            _download(client, run_id, f"{CHECKPOINT_ARTIFACT_DIR}/{name}", directory / name)
    last = directory / LAST
    if not last.is_file():
        raise ConfigError(
            f"--resume_run_id: run {run_id} has no {LAST} (neither in {directory} nor in its "
            "artifacts); it was interrupted before its first checkpoint"
        )
    load_checkpoint(last)  # CheckpointError with a clear message if truncated or foreign

    logged_through = {
        key: max(point.step for point in client.get_metric_history(run_id, key))
        for key in run.data.metrics
    }
    return ResumePoint(config, last, logged_through)
