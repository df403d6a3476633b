"""The train pipeline against a real ``mlflow server`` subprocess: REST round trip, an outage in
the middle of a run, an unreachable server at start, and basic auth."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import mlflow
import pytest
import requests
import torch
from mlflow.tracking import MlflowClient

from pipelines.common.config import parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from pipelines.tracking.models import log_model, tensor_signature
from pipelines.tracking.runs import tracked_run
from pipelines.tracking.store import REACHABILITY_TIMEOUT_S, TrackingUnavailable
from tests.conftest import (
    ROOT,
    TINY_LSTM_ARGS,
    CommandWatcher,
    MlflowServer,
    artifact_paths,
    free_port,
    subprocess_env,
    validated_run_id,
)

pytestmark = pytest.mark.slow

# the run must stay short; test lengths only affect the final scoring
TINY = [*TINY_LSTM_ARGS, "--test_lengths", "5"]


def test_train_against_the_server_round_trips_params_metrics_and_artifacts(mlflow_server):
    result = train(parse_config(TrainConfig, [*TINY, "--register_as", "lstm-copy"]))
    client = MlflowClient(mlflow_server.url)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.hidden_size"] == "16"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_bits_per_seq")] == [
        20,
        40,
    ]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "served, not a local path"
    files = set(artifact_paths(client, result.run_id))
    assert {"checkpoints/last.ckpt", "config/train_config.json"} <= files
    # the MLflow Model and the registry through the server: load it back by its alias
    champion = client.get_model_version_by_alias("lstm-copy", "champion")
    assert champion.run_id == result.run_id
    core = mlflow.pytorch.load_model("models:/lstm-copy@champion")
    assert core(torch.zeros(2, 3, 9)).shape == (2, 3, 8)
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
        "copy-train",
        "copy-validation",
        "copy-long_validation",
        "copy-test",
    }
    # the REST API itself, not only the Python client
    response = requests.get(
        f"{mlflow_server.url}/api/2.0/mlflow/runs/get", params={"run_id": result.run_id}
    )
    assert response.ok and response.json()["run"]["info"]["status"] == "FINISHED"


# MLflow's own retry window, shortened by its configuration: one retry within ~2 s, 3 s timeout.
# An outage longer than that must still lose nothing: the outbox retries on its own.
SHORT_MLFLOW_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
}


def test_server_outage_through_the_end_of_training_loses_no_metric(mlflow_server, tmp_path):
    """The server goes away mid-training and stays away past the end of training (far longer
    than MLflow's retry window): training finishes, the model logging waits, and once the
    server is back every metric arrives exactly once and the run ends FINISHED."""
    steps, epoch = 2000, 100
    args = [*TINY, "--max_steps", str(steps), "--batches_per_epoch", str(epoch)]
    args += ["--plot_every_n_val", "1000", "--log_every_n_steps", "20"]
    command = CommandWatcher(
        "pipelines.train",
        args,
        subprocess_env(
            MLFLOW_TRACKING_URI=mlflow_server.url,
            NTMLAB_HOME=str(tmp_path / "home"),
            **SHORT_MLFLOW_RETRIES,
        ),
    )
    client = MlflowClient(mlflow_server.url)
    deadline = time.monotonic() + 120
    run_id = None
    while run_id is None and time.monotonic() < deadline:
        assert command.process.poll() is None, command.stderr[-3000:]
        run_id = validated_run_id(client)
        time.sleep(0.2)
    assert run_id is not None, "the run never logged a validation metric"

    mlflow_server.stop()
    command.wait_for_line(
        "logging the model failed", 240, "training must not stop because the server did"
    )
    time.sleep(3)  # well past MLflow's own retry window
    mlflow_server.start()
    returncode = command.finish(300)
    stderr = command.stderr
    assert returncode == 0, stderr[-3000:]
    assert "tracking store unreachable" in stderr and "reachable again" in stderr

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    val_steps = sorted(m.step for m in client.get_metric_history(run_id, "val_bits_per_seq"))
    assert val_steps == list(range(epoch, steps + 1, epoch)), "every validation step, once"
    train_steps = sorted(m.step for m in client.get_metric_history(run_id, "train_loss"))
    assert train_steps == list(range(20, steps + 1, 20))
    assert "bit_acc_L5" in run.data.metrics and run.outputs.model_outputs


def test_the_end_of_a_run_is_delivered_when_the_server_comes_back(
    mlflow_server, monkeypatch, tmp_path
):
    """The final tags and status go through the outbox too: ending a run while the server
    is away (longer than MLflow's retry window) delays them, and a process-wide environment
    is left as it was."""
    for name, value in SHORT_MLFLOW_RETRIES.items():
        monkeypatch.setenv(name, value)

    def ours():  # MLflow's telemetry keeps a private session variable of its own
        return {k: v for k, v in os.environ.items() if not k.startswith("_MLFLOW_TELEMETRY")}

    environment = ours()
    restart = threading.Timer(4.0, mlflow_server.start)  # twice MLflow's shortened window
    with tracked_run("outage", "end-in-outage") as run:
        run.outbox.log_metrics({"loss": 1.0}, step=1)
        mlflow_server.stop()
        run.outbox.log_metrics({"loss": 0.5}, step=2)
        run.describe("ended during an outage")
        restart.start()
    restart.join()
    assert ours() == environment
    client = MlflowClient(mlflow_server.url)
    ended = client.get_run(run.run_id)
    assert ended.info.status == "FINISHED" and ended.info.end_time is not None
    assert ended.data.tags["mlflow.note.content"] == "ended during an outage"
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "loss")] == [
        (1, 1.0),
        (2, 0.5),
    ]


def test_logging_the_model_gives_up_within_its_patience_when_the_server_stays_away(
    mlflow_server, monkeypatch
):
    """With MLflow's own retries as they ship (minutes per call against a refused port), a
    server that stays away costs the model logging its patience plus seconds: every try asks
    the health endpoint first (docs/tracking.md promises the 2 minutes this bounds)."""
    for name in SHORT_MLFLOW_RETRIES:
        monkeypatch.delenv(name, raising=False)
    run = MlflowClient(mlflow_server.url).create_run("0")
    mlflow_server.stop()
    signature = tensor_signature((-1, -1, 9), (-1, -1, 8))
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable):
        log_model(
            run.info.run_id,
            torch.nn.Linear(9, 8),
            signature,
            torch.zeros(1, 2, 9),
            {},
            patience_s=3.0,
        )
    assert time.monotonic() - started < 3.0 + 2 * REACHABILITY_TIMEOUT_S


@pytest.mark.parametrize("host", ["127.0.0.1", "10.255.255.1"], ids=["refused", "no-answer"])
def test_unreachable_server_at_start_fails_fast_with_one_clear_line(host, tmp_path):
    uri = f"http://{host}:{free_port()}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.train", *TINY],
        cwd=ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, NTMLAB_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train: error: MLflow tracking server {uri} is unreachable")


def test_basic_auth_rejects_anonymous_clients_and_accepts_the_configured_user(
    tmp_path, monkeypatch
):
    config = tmp_path / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{tmp_path / 'auth.db'}\n"
        "admin_username = admin\n"
        "admin_password = s3cret-test-pass\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    server = MlflowServer(
        tmp_path,
        ("--app-name", "basic-auth"),
        env={"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only"},
    )
    server.start()
    try:
        search = f"{server.url}/api/2.0/mlflow/experiments/search"
        assert requests.get(search, params={"max_results": 1}).status_code == 401
        wrong = requests.get(search, params={"max_results": 1}, auth=("admin", "wrong"))
        assert wrong.status_code == 401
        right = requests.get(search, params={"max_results": 1}, auth=("admin", "s3cret-test-pass"))
        assert right.status_code == 200

        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-test-pass")
        mlflow.set_tracking_uri(server.url)
        result = train(parse_config(TrainConfig, TINY))
        assert MlflowClient(server.url).get_run(result.run_id).info.status == "FINISHED"
    finally:
        server.stop()
