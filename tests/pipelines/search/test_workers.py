"""hpo with several workers: heartbeats fail a killed trial and retry its parameters; two
workers share a journal file or a PostgreSQL storage without losing or repeating a trial."""

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

from pipelines.search.storage import open_storage
from tests.conftest import ROOT, free_port, subprocess_env
from tests.pipelines.search.studies import finished_trials, hpo_args, load_study, study_runs


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
    args = hpo_args(storage, 2, "--heartbeat_interval", "1", "--trial_max_steps", "400")
    worker = _hpo_process(args, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = "s" in optuna.study.get_all_study_names(storage)
        trials = load_study(storage).trials if started else []
        if trials and trials[0].state == TrialState.RUNNING and trials[0].params:
            break
        time.sleep(0.5)
    time.sleep(3)  # well inside the trial's training
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed = load_study(storage).trials[0]
    assert killed.state == TrialState.RUNNING, "nobody has noticed yet"
    time.sleep(3)  # past the grace period (2 x heartbeat)

    rerun = hpo_args(storage, 2, "--heartbeat_interval", "1", "--trial_max_steps", "20")
    assert (
        subprocess.run(
            [sys.executable, "-m", "pipelines.hpo", *rerun], cwd=ROOT, env=env, capture_output=True
        ).returncode
        == 0
    )
    trials = load_study(storage).trials
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert len(finished_trials(load_study(storage))) == 2
    _, runs = study_runs(client)
    (orphan,) = [r for r in runs if r.data.tags["optuna.trial_number"] == "0"]
    assert orphan.info.status == "FAILED", "the dead trial's run does not stay RUNNING"


def _two_workers(storage: str, env: dict, n_trials: int) -> None:
    args = hpo_args(storage, n_trials)
    workers = [_hpo_process(args, env) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    trials = load_study(storage).trials
    finished = finished_trials(load_study(storage))
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
    args = hpo_args(storage, 2, "--heartbeat_interval", "1", "--trial_max_steps", "200")
    victim = _hpo_process(args, env)
    deadline = time.monotonic() + 120
    victims = []
    while time.monotonic() < deadline and not victims:
        if "s" in optuna.study.get_all_study_names(open_storage(storage)):
            victims = [
                t
                for t in load_study(storage).trials
                if t.state == TrialState.RUNNING
                and t.user_attrs.get("worker_pid") == victim.pid
                and t.params
            ]
        time.sleep(0.2)
    assert victims, "the victim never started a trial"
    # the second worker joins the study the victim opened (and its parent run)
    survivor = _hpo_process(args, env)
    time.sleep(1)  # inside the victim's training
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-3000:]

    trials = load_study(storage).trials
    (killed,) = [t for t in trials if t.number == victims[0].number]
    assert killed.state == TrialState.FAIL
    assert not [t for t in trials if t.state == TrialState.RUNNING], "none left running"
    assert len(finished_trials(load_study(storage))) == 2, [t.state for t in trials]
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
        self._run(
            shutil.which("pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start"
        )
        self._run(
            shutil.which("createdb") or "createdb",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "optuna",
            "optuna",
        )
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
