"""Data-parallel training (DDP, 2 CPU processes over gloo) through the pipelines' commands."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from datamodules.mnist import MNISTDataModule
from models.metrics import score_batches
from pipelines.sequence.build import make_datamodule, make_module, make_task
from pipelines.sequence.trained import load_from_run
from pipelines.tracking.checkpoints import load_checkpoint
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow

DDP_TRAIN = [
    "--model",
    "lstm",
    "--hidden_size",
    "16",
    "--num_layers",
    "1",
    "--max_steps",
    "30",
    "--batches_per_epoch",
    "10",
    "--val_size",
    "101",
    "--eval_batch_size",
    "40",
    "--test_lengths",
    "5",
    "--test_size",
    "20",
    "--progress_bar",
    "false",
    "--accelerator",
    "cpu",
    "--devices",
    "2",
    "--strategy",
    "ddp",
]


def _pipeline(name: str, argv: list[str], tracking_uri: str, tmp_path: Path):
    """``python -m pipelines.<name> argv`` as a user runs it; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", f"pipelines.{name}", *argv],
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri, NTMLAB_HOME=str(tmp_path / "home")),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def test_two_process_training_is_one_finished_run_scored_as_one_process_would(
    tracking_uri, client, tmp_path
):
    done = _pipeline("train", DDP_TRAIN, tracking_uri, tmp_path)
    assert "Starting with 2 processes" in done.stdout + done.stderr
    (run,) = client.search_runs([client.get_experiment_by_name("copy").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["sequences_seen"] == 30 * 64 * 2, "both processes' batches count"
    history = client.get_metric_history(run.info.run_id, "val_bits_per_seq")
    assert sorted(m.step for m in history) == [10, 20, 30], "rank 0 alone logs"
    # the best checkpoint re-scored by one process on the whole set gives the DDP figure
    best = min(history, key=lambda m: (m.value, m.step))
    assert metrics["best_val_bits_per_seq"] == pytest.approx(best.value, abs=1e-5)
    # and the final weights, scored here, give the last validation of the two processes
    model = load_from_run(client, run.info.run_id)
    last_ckpt = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(tmp_path))
    module = make_module(model.config, model.task)
    module.load_state_dict(load_checkpoint(last_ckpt)["state_dict"])
    data = make_datamodule(model.config, make_task(model.config.data))
    scores = score_batches(module.model, data.val_batches())
    last = {m.step: m.value for m in history}[30]
    assert scores["bits_per_seq"] == pytest.approx(last, abs=1e-5)
    val_loss = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
    assert scores["loss"] == pytest.approx(val_loss[30], rel=1e-5)


def test_two_process_mnist_classifier_is_one_run_scored_as_one_process_would(
    tracking_uri, client, tmp_path, mnist_dir
):
    argv = [
        "--model",
        "mlp",
        "--depth",
        "2",
        "--hidden_size",
        "16",
        "--batch_norm",
        "false",
        "--epochs",
        "1",
        "--train_subset",
        "1024",
        "--progress_bar",
        "false",
        "--data_dir",
        str(mnist_dir),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
    ]
    _pipeline("classify", argv, tracking_uri, tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
    assert run.info.status == "FINISHED"
    # 1,024 images, 128 a batch, split over 2 processes: 4 steps an epoch
    assert run.data.metrics["epochs_trained"] == pytest.approx(1.0)
    data = MNISTDataModule("flat", data_dir=mnist_dir, train_subset=1024)
    core = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")  # the logged model
    with torch.no_grad():
        correct = sum(int((core(x).argmax(1) == y).sum()) for x, y in data.test_dataloader())
    assert run.data.metrics["test_acc"] == pytest.approx(correct / 10_000, abs=1e-6)


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line (rank 0) or environment (a worker's fit spec) holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            if marker.encode() in text:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    ("signal_to", "exit_code"),
    [("rank 0", 128 + signal.SIGTERM), ("the process group", 128 + signal.SIGINT)],
)
def test_a_signal_under_ddp_ends_the_run_killed_and_leaves_no_worker(
    tracking_uri, client, tmp_path, signal_to, exit_code
):
    marker = f"ddp-signal-{tmp_path.name}"
    argv = [
        *DDP_TRAIN,
        "--max_steps",
        "400",
        "--batches_per_epoch",
        "20",
        "--experiment_name",
        marker,
    ]
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking_uri, NTMLAB_HOME=str(tmp_path / "home"))
    rank0 = subprocess.Popen(
        [sys.executable, "-m", "pipelines.train", *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    run = None
    while time.monotonic() < deadline and run is None:
        experiment = client.get_experiment_by_name(marker)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "val_bits_per_seq"):
            run = runs[0]
        time.sleep(0.5)
    assert run is not None, "training never validated"
    assert len(_processes_with(marker)) == 2, "rank 0 and its worker"
    if signal_to == "rank 0":
        rank0.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C reaches every process of the foreground group
        os.killpg(rank0.pid, signal.SIGINT)
    _, err = rank0.communicate(timeout=120)
    assert rank0.returncode == exit_code, err[-3000:]
    assert _processes_with(marker) == [], "no worker outlives rank 0"
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "KILLED"
    saved = {item.path for item in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/last.ckpt" in saved
    if signal_to != "rank 0":
        return  # the resume below is the same after either signal

    resumed = subprocess.run(
        [sys.executable, "-m", "pipelines.train", "--resume_run_id", run.info.run_id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_bits_per_seq")]
    assert steps == sorted(set(steps)) and steps[-1] == 400, "one step axis, no step twice"
