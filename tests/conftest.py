"""Shared fixtures: every test that tracks gets its own sqlite MLflow store in a temp dir, or a
real ``mlflow server`` subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import pytorch_lightning as pl
import requests
from mlflow.tracking import MlflowClient

from pipelines.tracking import store as tracking_store
from pipelines.tracking.store import ARTIFACT_ROOT_ENV

ROOT = Path(__file__).resolve().parents[1]

# A train run that takes seconds: 1 x 16 LSTM, 2 validations of 50 sequences, a figure each.
TINY_LSTM_ARGS = [
    "--model",
    "lstm",
    "--hidden_size",
    "16",
    "--num_layers",
    "1",
    "--max_steps",
    "40",
    "--batches_per_epoch",
    "20",
    "--val_size",
    "50",
    "--test_lengths",
    "5,30",
    "--test_size",
    "20",
    "--plot_every_n_val",
    "1",
    "--log_every_n_steps",
    "5",
]


# what a test run may leave in the checkout: caches and the venv, nothing a run or a study writes
ALLOWED_IN_CHECKOUT = {".venv", ".pytest_cache", ".ruff_cache", "__pycache__", "ntmlab.egg-info"}


def checkout_files() -> set[str]:
    """Every untracked path of the checkout, ignored ones included, as git lists them (one
    entry per new directory), less the caches a test run may touch."""
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--directory", "--no-empty-directory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    paths = {path.rstrip("/") for path in (*listed, *ignored)}
    return {p for p in paths if not set(Path(p).parts) & ALLOWED_IN_CHECKOUT}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, once for the whole run
        session.config.stash[_CHECKOUT_BEFORE] = checkout_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test may write into the checkout (an ``mlruns/`` or ``mlflow.db`` there would be a
    user's data mixed with the suite's): fail the run if one did."""
    before = session.config.stash.get(_CHECKOUT_BEFORE, None)
    if before is None:
        return
    new = sorted(checkout_files() - before)
    if new:
        print(f"\ntests wrote into the checkout: {new}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_CHECKOUT_BEFORE = pytest.StashKey[set]()


@pytest.fixture(autouse=True)
def _no_inherited_run(monkeypatch, tmp_path):
    """Tests must never bind to a run from the environment they were started in."""
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("NTMLAB_HOME", str(tmp_path / "ntmlab-home"))
    # each test's store sets its own artifact root (pipelines.tracking.store.tracking_uri)
    os.environ.pop(ARTIFACT_ROOT_ENV, None)
    monkeypatch.setattr(tracking_store, "_artifact_root_set", None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite tracking store; artifacts land beside it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def client(tracking_uri) -> MlflowClient:
    return MlflowClient(tracking_uri)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child pipeline process: the venv first on PATH, no inherited run."""
    dropped = ("MLFLOW_RUN_ID", ARTIFACT_ROOT_ENV)  # the child resolves its own store
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    bin_dir = str(Path(os.sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    """Every artifact file of a run, recursively."""
    found: list[str] = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found.extend(artifact_paths(client, run_id, item.path))
        else:
            found.append(item.path)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answers(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> bool:
    """Poll ``url`` until it answers 2xx (True) or ``timeout_s`` passes (False); a server
    process that exits meanwhile raises with the tail of its ``log``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


class CommandWatcher:
    """A pipeline command in a subprocess (from the checkout, stdout dropped), its stderr
    collected line by line while it runs, so a test can act on what it says."""

    def __init__(self, module: str, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(self.process.stderr), daemon=True
        )
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float, alive_message: str | None = None) -> None:
        """Until a stderr line holds ``text``; the command must stay alive meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, alive_message or self.stderr[-3000:]
            assert time.monotonic() < deadline, self.stderr[-3000:]
            time.sleep(0.5)

    def finish(self, timeout_s: float) -> int:
        self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return self.process.returncode


def validated_run_id(client: MlflowClient) -> str | None:
    """A run of any experiment that has logged a validation (``val_bits_per_seq``)."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="metrics.val_bits_per_seq >= 0",
    )
    return runs[0].info.run_id if runs else None


class MlflowServer:
    """``mlflow server`` on loopback with a sqlite store and served artifacts, restartable on the
    same port and store (to simulate an outage)."""

    def __init__(self, directory: Path, extra_args: tuple[str, ...] = (), env=None) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log = directory / "server.log"

    def start(self, timeout_s: float = 60.0) -> None:
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.directory / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.directory / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            *self.extra_args,
        ]
        # MLflow 3.17's server starts four job-queue consumers (GenAI jobs, each importing
        # mlflow) that nothing here uses: off, they cost no CPU on a two-core CI machine
        env = subprocess_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **self.env)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        if wait_until_answers(f"{self.url}/health", self.process, self.log, timeout_s):
            return
        self.stop()
        raise RuntimeError(f"mlflow server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """A running tracking server; ``MLFLOW_TRACKING_URI`` points at it."""
    server = MlflowServer(tmp_path / "server")
    server.directory.mkdir()
    server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    mlflow.set_tracking_uri(server.url)
    yield server
    server.stop()


class CtrlCAt(pl.Callback):
    """Sends SIGINT to this process, as a terminal's Ctrl-C would, after ``step`` batches."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


MNIST_DIR = Path(os.environ.get("NTMLAB_MNIST_DIR") or ROOT.parent / "shared" / "data")


def _mnist_dir() -> Path:
    from datamodules.mnist import has_local_files

    if not has_local_files(MNIST_DIR):
        pytest.fail(f"the MNIST raw files are not in {MNIST_DIR}/MNIST/raw; set NTMLAB_MNIST_DIR")
    return MNIST_DIR


@pytest.fixture
def mnist_dir() -> Path:
    """The local MNIST root (``$NTMLAB_MNIST_DIR``, else ../shared/data); tests never download."""
    return _mnist_dir()


@pytest.fixture(scope="module")
def mnist_dir_module() -> Path:
    return _mnist_dir()
