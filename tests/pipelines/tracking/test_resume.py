"""Interrupting and resuming the train pipeline in real subprocesses (kill -9, SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.common.config import parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from pipelines.tracking.checkpoints import load_checkpoint
from pipelines.tracking.resume import checkpoint_dir
from pipelines.train import main
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow

STEPS, EPOCH, LOG_EVERY = 400, 20, 5
ARGS = [
    "--model",
    "lstm",
    "--hidden_size",
    "16",
    "--num_layers",
    "1",
    "--max_steps",
    str(STEPS),
    "--batches_per_epoch",
    str(EPOCH),
    "--val_size",
    "50",
    "--test_lengths",
    "5",
    "--test_size",
    "20",
    "--log_every_n_steps",
    str(LOG_EVERY),
    "--plot_every_n_val",
    "100",
    "--seed",
    "7",
]
# Same seed, same data, same arithmetic: a resumed run should match an uninterrupted one. CPU
# float arithmetic is deterministic here, so the tolerance is tight; 5 % is the target.
RELATIVE_TOLERANCE = 0.05


def _start_training(home: Path, uri: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.train", *ARGS, *extra],
        cwd=ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, NTMLAB_HOME=str(home)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(home: Path, process: subprocess.Popen, timeout_s: float = 120) -> str:
    """The run id, once the run's first ``last.ckpt`` exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = list(home.glob("runs/*/checkpoints/last.ckpt"))
        if found:
            return found[0].parts[-3]
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no checkpoint appeared")


def _resume(home: Path, uri: str, run_id: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.train", "--resume_run_id", run_id],
        cwd=ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, NTMLAB_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _steps(client, run_id: str, key: str) -> list[int]:
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
    return [point.step for point in history]


def _assert_one_continuous_axis(client, run_id: str) -> None:
    val_steps = sorted(_steps(client, run_id, "val_bits_per_seq"))
    assert val_steps == list(range(EPOCH, STEPS + 1, EPOCH)), "no gap, no duplicate"
    train_steps = sorted(_steps(client, run_id, "train_loss"))
    assert len(train_steps) == len(set(train_steps)), "no duplicate train_loss step"
    assert train_steps == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY)), "no gap in train_loss"


def _uninterrupted_score(tmp_path, monkeypatch) -> float:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'reference.db'}")
    return train(parse_config(TrainConfig, ARGS)).best_score


def _assert_close(resumed: float, reference: float) -> None:
    assert abs(resumed - reference) <= RELATIVE_TOLERANCE * abs(reference) + 1e-9, (
        resumed,
        reference,
    )


def test_kill_9_then_resume_continues_the_same_run(tracking_uri, client, tmp_path, monkeypatch):
    home = tmp_path / "home"
    process = _start_training(home, tracking_uri)
    run_id = _wait_for_checkpoint(home, process)
    time.sleep(0.5)  # let it log a few steps past the checkpoint: the resume replays those
    process.kill()
    process.wait()
    assert client.get_run(run_id).info.status == "RUNNING", "kill -9 gives no chance to end it"

    resumed = _resume(home, tracking_uri, run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    _assert_one_continuous_axis(client, run_id)
    assert len(client.search_runs([run.info.experiment_id])) == 1, "no second run was started"
    reference = _uninterrupted_score(tmp_path, monkeypatch)
    _assert_close(run.data.metrics["best_val_bits_per_seq"], reference)


def test_kill_9_on_a_plateau_resumes_from_the_last_validation_not_the_last_best(
    tracking_uri, client, tmp_path
):
    """With a rate of 1e-30 no validation improves on the first: the best checkpoint stays at
    step 20 while last.ckpt must follow every validation, so a resume loses nothing."""
    home = tmp_path / "home"
    process = _start_training(home, tracking_uri, "--lr", "1e-30")
    run_id = _wait_for_checkpoint(home, process)
    last = home / "runs" / run_id / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while load_checkpoint(last)["global_step"] < 3 * EPOCH and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.05)
    process.kill()
    process.wait()
    killed_at = load_checkpoint(last)["global_step"]
    best = load_checkpoint(last.with_name("best.ckpt"))["global_step"]
    assert best == EPOCH and killed_at >= 3 * EPOCH, (best, killed_at)

    resumed = _resume(home, tracking_uri, run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"from {last}" in resumed.stdout
    _assert_one_continuous_axis(client, run_id)
    artifact = client.download_artifacts(run_id, "checkpoints/last.ckpt", str(tmp_path))
    assert load_checkpoint(artifact)["global_step"] == STEPS


def test_sigterm_ends_the_run_killed_with_a_loadable_checkpoint_that_resumes_exactly(
    tracking_uri, client, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    process = _start_training(home, tracking_uri)
    run_id = _wait_for_checkpoint(home, process)
    time.sleep(0.3)  # most likely mid-epoch: the resume must continue the data stream there
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "interrupted by SIGTERM" in stderr
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "interrupted by SIGTERM"
    local = home / "runs" / run_id / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(local)
    interrupted_at = checkpoint["global_step"]
    assert 0 < interrupted_at < STEPS
    assert "checkpoints/last.ckpt" in {a.path for a in client.list_artifacts(run_id, "checkpoints")}

    resumed = _resume(home, tracking_uri, run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    _assert_one_continuous_axis(client, run_id)
    reference = _uninterrupted_score(tmp_path, monkeypatch)
    _assert_close(run.data.metrics["best_val_bits_per_seq"], reference)


def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(tracking_uri, client, tmp_path, capsys):
    result = train(parse_config(TrainConfig, [*ARGS, "--max_steps", "20"]))
    local = checkpoint_dir(result.run_id) / "last.ckpt"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert main(["--resume_run_id", result.run_id]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("train: error: checkpoint ") and "corrupt or unreadable" in error
    assert client.get_run(result.run_id).info.status == "FINISHED", "the run was not touched"


def test_resume_of_an_unknown_run_is_a_clear_error(tracking_uri, capsys):
    assert main(["--resume_run_id", "0123456789abcdef"]) == 2
    assert "no run '0123456789abcdef'" in capsys.readouterr().err
