"""An hpo worker against a real ``mlflow server`` that goes away in the middle of a trial:
the trial trains on (its tracking waits in its run's outbox), and once the server is back the
study ends with every trial run FINISHED, tagged, registered and with every metric once."""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from pipelines.search import objective
from tests.conftest import CommandWatcher, subprocess_env, validated_run_id
from tests.pipelines.search.studies import FIXED, hpo_args, study_runs

pytestmark = pytest.mark.slow

STEPS, EPOCH = 600, 50
SPACE = FIXED.replace("hidden_size=16|32", "hidden_size=16").replace(
    "batches_per_epoch=10", f"batches_per_epoch={EPOCH}"
)


def test_a_server_outage_in_a_trial_stalls_nothing_and_loses_nothing(
    mlflow_server, storage, tmp_path
):
    args = hpo_args(storage, 2, "--trial_max_steps", str(STEPS), space=SPACE)
    # MLflow's own retries as they ship: nothing on the trial's path may enter them
    command = CommandWatcher(
        "pipelines.hpo",
        args,
        subprocess_env(MLFLOW_TRACKING_URI=mlflow_server.url, NTMLAB_HOME=str(tmp_path)),
    )
    client = MlflowClient(mlflow_server.url)
    deadline = time.monotonic() + 180
    while validated_run_id(client) is None:
        assert command.process.poll() is None, command.stderr[-3000:]
        assert time.monotonic() < deadline, "no trial logged a validation"
        time.sleep(0.2)

    mlflow_server.stop()
    # the trial trains to its end meanwhile: its model logging is the first thing that waits
    command.wait_for_line("logging the model failed", 120, None)
    mlflow_server.start()
    returncode = command.finish(300)
    stderr = command.stderr
    assert returncode == 0, stderr[-3000:]
    assert "tracking store unreachable" in stderr and "reachable again" in stderr

    (parent,), trials = study_runs(client)
    assert parent.info.status == "FINISHED"
    assert len(trials) == 2
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.trial_state"] == "COMPLETE"
        history = client.get_metric_history(run.info.run_id, "val_bits_per_seq")
        assert sorted(m.step for m in history) == list(range(EPOCH, STEPS + 1, EPOCH))
    versions = client.search_model_versions("name = 'lstm-copy'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in trials)


def test_a_trial_that_finished_while_the_store_was_away_is_registered_once_it_answers(
    monkeypatch,
):
    registered: list[int] = []
    monkeypatch.setattr(
        objective, "_register_trial", lambda config, number, *rest: registered.append(number)
    )
    session = {"unregistered": [(0, "run-a", 0.5), (1, "run-b", 0.4)]}
    monkeypatch.setattr(objective, "reachable", lambda uri: False)
    objective.register_finished(None, session, "parent")
    assert registered == [] and len(session["unregistered"]) == 2
    monkeypatch.setattr(objective, "reachable", lambda uri: True)
    objective.register_finished(None, session, "parent")
    assert registered == [0, 1] and session["unregistered"] == []
