"""The hpo pipeline: studies of tiny LSTM trials against temp Optuna and MLflow stores."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from pipelines.config import parse_config
from pipelines.evaluate import main as evaluate_main
from pipelines.hpo import (
    PARENT_RUN_ATTR,
    HpoConfig,
    base_trial_config,
    main,
    open_storage,
    schema_of,
    space_name,
)
from pipelines.search_spaces import build_space
from tests.conftest import ROOT, free_port, subprocess_env

# trials of seconds: a 1-layer LSTM on copy of lengths 1..3, 2 validations of 40 sequences
FIXED = "num_layers=1,hidden_size=16|32,batches_per_epoch=10,val_size=40,test_size=10,max_len=3"


def _args(storage: str, n_trials: int, *extra: str, space: str = FIXED) -> list[str]:
    return ["--model", "lstm", "--storage", storage, "--n_trials", str(n_trials),
            "--trial_max_steps", "20", "--space", space, "--study_name", "s", *extra]  # fmt: skip


@pytest.fixture
def storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _study(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=open_storage(storage))


def _finished(study):
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def _runs(client):
    experiment = client.get_experiment_by_name("hpo-copy")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("ntmlab.pipeline") == "hpo"]
    trials = [run for run in runs if run.data.tags.get("ntmlab.pipeline") == "train"]
    return parents, trials


def test_a_tiny_study_has_a_parent_run_one_nested_run_per_trial_and_the_best_link(client, storage):
    assert main(_args(storage, 3)) == 0
    study = _study(storage)
    assert len(_finished(study)) == 3
    (parent,), trials = _runs(client)
    assert parent.info.status == "FINISHED"
    assert study.user_attrs[PARENT_RUN_ATTR] == parent.info.run_id
    assert len(trials) == 3
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.trial_state"] == "COMPLETE"
        number = int(run.data.tags["optuna.trial_number"])
        assert study.trials[number].user_attrs["run_id"] == run.info.run_id
        assert float(run.data.params["optim.lr"]) == pytest.approx(
            study.trials[number].params["lr"]
        )
    best = study.best_trial
    assert parent.data.tags["best_trial_run_id"] == best.user_attrs["run_id"]
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.params["resolved.storage"] == storage
    assert parent.data.params["space.hidden_size"] == "16 | 32"
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/best_trial.json"} <= files
    assert parent.data.tags["mlflow.note.content"].startswith("Study `s`: 3 complete of 3")
    # every finished trial is a version of lstm-copy; champion is the best trial's model
    versions = client.search_model_versions("name = 'lstm-copy'")
    assert sorted(v.tags["optuna.trial_number"] for v in versions) == ["0", "1", "2"]
    champion = client.get_model_version_by_alias("lstm-copy", "champion")
    assert champion.run_id == best.user_attrs["run_id"]
    assert champion.tags["optuna.trial_number"] == str(best.number)
    assert float(champion.tags["ntmlab.metric_value"]) == pytest.approx(best.value)
    # ... and evaluate scores the champion as its train run scored it
    best_run = client.get_run(best.user_attrs["run_id"])
    (scored,) = [key for key in best_run.data.metrics if key.startswith("bit_acc_L")]
    assert evaluate_main(["--models", "models:/lstm-copy@champion", "--lengths",
                          scored.removeprefix("bit_acc_L"), "--test_size", "10"]) == 0  # fmt: skip
    (evaluation,) = client.search_runs(
        [parent.info.experiment_id], filter_string="tags.`ntmlab.pipeline` = 'evaluate'"
    )
    assert evaluation.data.metrics[scored] == pytest.approx(best_run.data.metrics[scored])


def test_a_clearly_worse_trial_is_pruned(client, storage):
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    for _ in range(4):  # the median pruner's startup trials learn with a good learning rate
        study.enqueue_trial({"lr": 1e-2, "hidden_size": 32})
    study.enqueue_trial({"lr": 1e-7, "hidden_size": 32})  # learns nothing in 20 steps
    assert main(_args(storage, 5, "--trial_max_steps", "40")) == 0
    trials = _study(storage).trials
    assert [t.state for t in trials[:4]] == [TrialState.COMPLETE] * 4
    assert trials[4].state == TrialState.PRUNED
    assert trials[4].user_attrs["steps"] < 40, "the pruned trial stopped early"
    _, runs = _runs(client)
    states = {r.data.tags["optuna.trial_number"]: r.data.tags["optuna.trial_state"] for r in runs}
    assert states["4"] == "PRUNED"


def test_rerunning_the_command_resumes_the_study_without_replaying_parameters(client, storage):
    assert main(_args(storage, 2)) == 0
    assert main(_args(storage, 4)) == 0
    trials = _study(storage).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    first, later = [t.params["lr"] for t in trials[:2]], [t.params["lr"] for t in trials[2:]]
    assert not set(first) & set(later), "the resumed sampler drew new parameters"
    parents, runs = _runs(client)
    assert len(parents) == 1 and len(runs) == 4, "one parent run, reopened by the resume"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--space", "nonsense=1"], "'nonsense' is not an option of the trial pipeline"),
        (["--space", "lr=1e-2:1e-4"], "lr=1e-2:1e-4 is an empty range"),
        (["--space", "lr=abc"], "expected a number"),
        (["--space", "hidden_size=0|16"], "hidden_size=0 is invalid: --hidden_size: must be >= 1"),
    ],
)
def test_bad_search_spaces_exit_2_and_write_nothing(storage, capsys, extra, message):
    assert main([*_args(storage, 1), *extra]) == 2
    assert message in capsys.readouterr().err
    assert optuna.study.get_all_study_names(storage) == []


def test_unreachable_storage_and_direction_mismatch_exit_2(client, storage, capsys):
    dead = "postgresql+psycopg://user:secret@127.0.0.1:1/optuna"
    assert main(_args(dead, 1)) == 2
    err = capsys.readouterr().err
    assert "--storage: cannot open postgresql+psycopg://user:***@127.0.0.1:1/optuna" in err
    assert "secret" not in err

    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    assert main(_args(storage, 1)) == 2
    assert "was created to maximize, not minimize" in capsys.readouterr().err
    assert _study(storage).trials == []


def _hpo_process(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.hpo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_trial_is_failed_by_heartbeat_and_its_parameters_are_retried(
    client, tracking_uri, storage
):
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking_uri)
    # the first trial is long (40 steps of the longest lengths), so the kill lands inside it
    args = _args(storage, 2, "--heartbeat_interval", "1", "--trial_max_steps", "400")
    worker = _hpo_process(args, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        trials = _study(storage).trials if "s" in optuna.study.get_all_study_names(storage) else []
        if trials and trials[0].state == TrialState.RUNNING and trials[0].params:
            break
        time.sleep(0.5)
    time.sleep(3)  # well inside the trial's training
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed = _study(storage).trials[0]
    assert killed.state == TrialState.RUNNING, "nobody has noticed yet"
    time.sleep(3)  # past the grace period (2 x heartbeat)

    rerun = _args(storage, 2, "--heartbeat_interval", "1", "--trial_max_steps", "20")
    assert subprocess.run([sys.executable, "-m", "pipelines.hpo", *rerun], cwd=ROOT, env=env,
                          capture_output=True).returncode == 0  # fmt: skip
    trials = _study(storage).trials
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert len(_finished(_study(storage))) == 2
    _, runs = _runs(client)
    (orphan,) = [r for r in runs if r.data.tags["optuna.trial_number"] == "0"]
    assert orphan.info.status == "FAILED", "the dead trial's run does not stay RUNNING"


def _two_workers(storage: str, env: dict, n_trials: int) -> None:
    args = _args(storage, n_trials)
    workers = [_hpo_process(args, env) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    trials = _study(storage).trials
    finished = _finished(_study(storage))
    assert len(finished) == n_trials, [t.state for t in trials]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), "no trial number twice"
    assert not [t for t in trials if t.state == TrialState.RUNNING], "none left running"


@pytest.mark.slow
def test_two_workers_share_a_journal_storage(mlflow_server, tmp_path):
    # workers share a tracking server, as they would across machines (two processes creating
    # one fresh sqlite MLflow store at once race on its schema migrations)
    env = subprocess_env(MLFLOW_TRACKING_URI=mlflow_server.url)
    _two_workers(f"journal:///{tmp_path / 'journal.log'}", env, 4)


@pytest.mark.slow
def test_a_worker_killed_on_a_journal_storage_leaks_no_trial_and_no_run(mlflow_server, tmp_path):
    """Two journal workers; one is killed -9 inside its trial. The other fails that trial by
    its stale heartbeat, retries its parameters and finishes exactly n_trials, and no MLflow
    run is left RUNNING."""
    storage = f"journal:///{tmp_path / 'journal.log'}"
    env = subprocess_env(MLFLOW_TRACKING_URI=mlflow_server.url)
    args = _args(storage, 2, "--heartbeat_interval", "1", "--trial_max_steps", "200")
    victim = _hpo_process(args, env)
    deadline = time.monotonic() + 120
    victims = []
    while time.monotonic() < deadline and not victims:
        if "s" in optuna.study.get_all_study_names(open_storage(storage)):
            victims = [t for t in _study(storage).trials if t.state == TrialState.RUNNING
                       and t.user_attrs.get("worker_pid") == victim.pid and t.params]  # fmt: skip
        time.sleep(0.2)
    assert victims, "the victim never started a trial"
    # the second worker joins the study the victim opened (and its parent run)
    survivor = _hpo_process(args, env)
    time.sleep(1)  # inside the victim's training
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-3000:]

    trials = _study(storage).trials
    (killed,) = [t for t in trials if t.number == victims[0].number]
    assert killed.state == TrialState.FAIL
    assert not [t for t in trials if t.state == TrialState.RUNNING], "none left running"
    assert len(_finished(_study(storage))) == 2, [t.state for t in trials]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params
    client = MlflowClient(mlflow_server.url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    (orphan,) = [r for r in runs if r.data.tags.get("optuna.trial_number") == str(killed.number)]
    assert orphan.info.status == "FAILED"
    assert "RUNNING" not in {r.info.status for r in runs if r.info.run_id != orphan.info.run_id}


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port in a temp dir (as the postgres
    user when the tests run as root, because initdb refuses root)."""

    def __init__(self, directory) -> None:
        self.directory, self.port = directory, free_port()
        self.data = directory / "data"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(shutil.which("initdb"), "-D", str(self.data), "-U", "optuna", "--auth=trust")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")  # the server must not hold our pipes open
        self._run(shutil.which("pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w",
                  "start")  # fmt: skip
        self._run(shutil.which("createdb") or "createdb", "-h", "127.0.0.1", "-p",
                  str(self.port), "-U", "optuna", "optuna")  # fmt: skip
        return f"postgresql+psycopg://optuna@127.0.0.1:{self.port}/optuna"

    def stop(self) -> None:
        self._run(shutil.which("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("initdb") and shutil.which("pg_ctl")),
    reason="PostgreSQL server binaries are not installed (.ci/run installs them)",
)
def test_two_workers_share_a_postgresql_storage(mlflow_server):
    # not under tmp_path: pytest's base temp dir is private to root, the postgres user needs in
    directory = Path(tempfile.mkdtemp(prefix="ntmlab-pg-"))
    directory.chmod(0o755)
    server = PostgresServer(directory / "cluster")
    try:
        url = server.start()
        env = subprocess_env(MLFLOW_TRACKING_URI=mlflow_server.url)
        _two_workers(url, env, 4)
    finally:
        if server.data.exists():
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_the_unfolded_lstm_is_searched_on_mnist_maximizing_val_acc(client, storage, mnist_dir):
    space = (f"depth=2|3,hidden_size=8,train_subset=128,batch_size=32,val_every_n_steps=2,"
             f"data_dir={mnist_dir}")  # fmt: skip
    args = ["--model", "unfolded_lstm", "--task", "mnist", "--storage", storage, "--n_trials",
            "2", "--trial_max_steps", "4", "--space", space, "--study_name", "s"]  # fmt: skip
    assert main(args) == 0
    study = _study(storage)
    assert study.direction.name == "MAXIMIZE" and len(_finished(study)) == 2
    assert {"depth", "dropout", "tied", "lr"} <= set(study.trials[0].params)
    (parent,) = client.search_runs([client.get_experiment_by_name("hpo-mnist").experiment_id],
                                   filter_string="tags.`ntmlab.pipeline` = 'hpo'")  # fmt: skip
    assert parent.data.params["resolved.metric"] == "val_acc"
    assert 0.0 <= parent.data.metrics["best_value"] <= 1.0
    champion = client.get_model_version_by_alias("unfolded_lstm-mnist", "champion")
    assert champion.run_id == study.best_trial.user_attrs["run_id"], "maximized, not minimized"
    assert main(["--model", "ntm", "--task", "mnist", "--storage", storage]) == 2


def test_a_trial_that_crashes_is_fail_and_its_run_is_labelled(client, storage, monkeypatch):
    import pipelines.hpo as hpo_module
    from pipelines.tracking.runs import tracked_run

    def crashing_train(config, callbacks, nested, tags):
        with tracked_run("hpo-copy", "crash", {"ntmlab.pipeline": "train", **tags}, nested=nested):
            raise FloatingPointError("non-finite training loss")

    monkeypatch.setattr(hpo_module, "train", crashing_train)
    assert main(_args(storage, 1)) == 0  # the study survives; it stops after 3 failures in a row
    trials = _study(storage).trials
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)
    _, runs = _runs(client)
    assert len(runs) == 3
    assert all(r.info.status == "FAILED" and r.data.tags["optuna.trial_state"] == "FAIL"
               for r in runs)  # fmt: skip


def test_every_trial_trains_where_the_study_is_placed(storage):
    config = parse_config(HpoConfig, ["--model", "lstm", "--storage", storage, "--devices", "2",
                                      "--strategy", "ddp", "--accelerator", "cpu"])  # fmt: skip
    space = build_space(space_name(config), config.space, schema_of(config))
    trainer = base_trial_config(config, space).trainer
    assert (trainer.accelerator, trainer.devices, trainer.strategy) == ("cpu", "2", "ddp")
