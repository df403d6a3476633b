"""Where a local store keeps artifacts: beside its database, whatever the current directory."""

from __future__ import annotations

import os

from mlflow.tracking import MlflowClient

from pipelines.tracking import store
from pipelines.tracking.store import ARTIFACT_ROOT_ENV, ensure_experiment, tracking_uri


def test_a_fresh_stores_default_experiment_keeps_artifacts_beside_the_database(
    tmp_path, monkeypatch
):
    """Pins the MLflow behaviour the project relies on: a sqlite client store takes its
    default artifact root from ARTIFACT_ROOT_ENV, so Default is not ./mlruns of the cwd."""
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, "")  # recorded, so the test's value is undone
    monkeypatch.delenv(ARTIFACT_ROOT_ENV)
    monkeypatch.setattr(store, "_artifact_root_set", None)
    database, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    database.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database / 'mlflow.db'}")
    monkeypatch.chdir(elsewhere)
    client = MlflowClient(tracking_uri())
    default = client.get_experiment("0").artifact_location
    assert default == f"{(database / 'mlartifacts').as_uri()}/0"
    made = client.get_experiment(ensure_experiment(client, "copy")).artifact_location
    assert made.startswith((database / "mlartifacts").as_uri())
    assert not (elsewhere / "mlruns").exists()


def test_a_root_the_user_set_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_artifact_root_set", None)
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, "s3://team-bucket/artifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking_uri()
    assert os.environ[ARTIFACT_ROOT_ENV] == "s3://team-bucket/artifacts"
