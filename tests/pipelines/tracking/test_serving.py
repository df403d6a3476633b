"""The logged MLflow Model as users serve it: its serving example validates, and
``mlflow models serve --env-manager local`` answers copy batches over HTTP on loopback with the
same logits as the loaded core."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import requests
import torch

from datamodules.synthetic import CopyTask, SyntheticDataModule
from pipelines.common.config import parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from tests.conftest import TINY_LSTM_ARGS, free_port, subprocess_env, wait_until_answers

pytestmark = pytest.mark.slow

SERVER_START_S = 180.0


def _serve(uri: str, tracking_uri: str, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking_uri)
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def test_the_model_serves_copy_batches_over_http(client, tracking_uri, tmp_path):
    result = train(parse_config(TrainConfig, [*TINY_LSTM_ARGS, "--test_lengths", "5"]))
    uri = f"runs:/{result.run_id}/model"

    # the example MLflow stored beside the model is a valid request for it
    example = client.download_artifacts(result.run_id, "model/serving_input_example.json")
    predicted = tmp_path / "predicted.json"
    mlflow.models.predict(
        uri,
        input_path=example,
        content_type="json",
        output_path=str(predicted),
        env_manager="local",
    )
    answer = np.asarray(json.loads(predicted.read_text())["predictions"])
    assert answer.shape == (2, json_length(example), 8)

    core = mlflow.pytorch.load_model(uri)
    port, log_path = free_port(), tmp_path / "serve.log"
    with open(log_path, "ab") as log:
        process = _serve(uri, tracking_uri, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_answers(f"{url}/ping", process, log_path, SERVER_START_S), (
            f"the scoring server did not start: {log_path.read_text()[-3000:]}"
        )
        # one length per request (a batch is one [batch, time, 9] tensor); any length works
        for length in (5, 12):
            data = SyntheticDataModule(CopyTask(), test_lengths=(length,), test_size=4, seed=1)
            (batch,) = data.test_batches(length)
            response = requests.post(
                f"{url}/invocations", json={"inputs": batch.inputs.tolist()}, timeout=60
            )
            assert response.ok, response.text[:2000]
            served = torch.tensor(response.json()["predictions"])
            with torch.no_grad():
                expected = core(batch.inputs)
            assert served.shape == expected.shape == (4, batch.inputs.shape[1], 8)
            torch.testing.assert_close(served, expected, rtol=1e-5, atol=1e-5)
        # a request that is not [batch, time, 9] is refused with a client error, not a crash
        refused = requests.post(f"{url}/invocations", json={"inputs": [[[0.0] * 3]]}, timeout=60)
        assert 400 <= refused.status_code < 500, refused.text[:2000]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def json_length(path) -> int:
    """The time length of the serving example's ``inputs`` (``[batch, time, 9]``)."""
    with open(path) as stream:
        return len(json.load(stream)["inputs"][0])
