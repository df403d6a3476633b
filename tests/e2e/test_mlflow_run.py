"""`mlflow run .` end to end: the way users start the pipelines."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.common.config import parse_config
from pipelines.common.interrupts import RunInterrupted
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from tests.conftest import ROOT, CtrlCAt, artifact_paths, subprocess_env

pytestmark = pytest.mark.slow

MLFLOW = str(Path(sys.executable).parent / "mlflow")
TINY = {
    "model": "lstm",
    "max_steps": "40",
    "batches_per_epoch": "20",
    "hidden_size": "16",
    "num_layers": "1",
    "test_lengths": "5,10",
}


def mlflow_run(
    tracking_uri: str,
    params: dict[str, str],
    entry: str = "main",
    timeout=300,
    experiment: str | None = "e2e",
):
    command = [MLFLOW, "run", str(ROOT), "--env-manager", "local", "-e", entry]
    command += ["--experiment-name", experiment] if experiment else []
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    # from the store's directory: an experiment `mlflow run --experiment-name` creates keeps
    # MLflow's default artifact root, ./mlruns of the current directory
    store_dir = Path(tracking_uri.removeprefix("sqlite:///")).parent
    return subprocess.run(
        command,
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=store_dir,
    )


def test_main_entry_point_finishes_a_tracked_run(tracking_uri, client):
    done = mlflow_run(tracking_uri, TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "lstm"
    assert run.data.params["trainer.max_steps"] == "40"
    assert {"val_bits_per_seq", "train_loss", "bit_acc_L10", "param_count"} <= set(run.data.metrics)
    files = set(artifact_paths(client, run.info.run_id))
    assert "checkpoints/best.ckpt" in files and "checkpoints/last.ckpt" in files
    assert "plots/example_final.png" in files


def test_without_an_experiment_name_the_run_goes_to_the_task_experiment(tracking_uri, client):
    """`mlflow run` puts its run in "Default" (which MLflow 3's UI opens as GenAI): the work
    goes to the task's experiment, tagged as model training, and the stub points at it."""
    done = mlflow_run(tracking_uri, {**TINY, "max_steps": "20"}, entry="train", experiment=None)
    assert done.returncode == 0, done.stderr[-3000:]
    copy = client.get_experiment_by_name("copy")
    assert copy.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([copy.experiment_id])
    assert run.info.status == "FINISHED" and run.outputs.model_outputs
    assert run.data.params["max_steps"] == "20", "the -P values as mlflow run logged them"
    assert run.data.params["trainer.max_steps"] == "20"
    (stub,) = client.search_runs(["0"])
    assert stub.info.status == "FINISHED"
    assert stub.data.tags["ntmlab.moved_to"] == run.info.run_id
    assert run.info.run_id in stub.data.tags["mlflow.note.content"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "foo"}, "--model: 'foo' is not allowed; choose one of: ntm, lstm"),
        ({"hidden_size": "-5"}, "--hidden_size: must be >= 1, got -5"),
        ({"min_len": "9", "max_len": "4"}, "--min_len (9) must not exceed --max_len (4)"),
        ({"max_steps": "many"}, "argument --max_steps: expected an integer, got 'many'"),
        ({"devices": "-3"}, "--accelerator auto --devices -3 --num_nodes 1 --strategy auto: "),
    ],
)
def test_bad_parameters_fail_the_run_with_one_clear_line(tracking_uri, client, params, message):
    done = mlflow_run(tracking_uri, params)
    assert done.returncode != 0
    assert f"train: error: {message}" in done.stderr
    assert "Traceback" not in done.stderr
    (run,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert run.info.status == "FAILED"
    assert message in run.data.tags["error"]


def test_pipeline_process_exits_2_on_bad_input(tracking_uri, client):
    """The command MLflow runs exits 2 and fails the run it was handed (MLFLOW_RUN_ID)."""
    run = client.create_run(client.create_experiment("handed"))
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.train", "--model", "foo"],
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_RUN_ID=run.info.run_id),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("train: error: --model: 'foo'")
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_resume_entry_parameter_continues_the_interrupted_run(tracking_uri, client):
    argv = ["--model", "lstm", "--hidden_size", "16", "--num_layers", "1", "--max_steps", "60"]
    argv += ["--batches_per_epoch", "20", "--val_size", "50", "--test_lengths", "5"]
    with pytest.raises(RunInterrupted):
        train(parse_config(TrainConfig, argv), callbacks=[CtrlCAt(30)])
    (interrupted,) = client.search_runs([client.get_experiment_by_name("copy").experiment_id])
    run_id = interrupted.info.run_id
    assert interrupted.info.status == "KILLED"

    done = mlflow_run(tracking_uri, {"resume_run_id": run_id}, entry="train")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = client.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    val_steps = sorted(m.step for m in client.get_metric_history(run_id, "val_bits_per_seq"))
    assert val_steps == [20, 40, 60]
    (launcher,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert launcher.data.tags["ntmlab.resumed_into"] == run_id
    assert launcher.info.run_name == f"resume-of-{run_id[:8]}"
    assert launcher.info.status == "FINISHED"


def _seeds(tracking_uri, threshold: str):
    params = {**TINY, "seeds": "0-1", "workers": "2", "train_past": "true"}
    return mlflow_run(tracking_uri, {**params, "threshold": threshold}, "seeds", experiment=None)


def test_the_seeds_entry_point_scores_a_study_and_a_rerun_trains_nothing(tracking_uri, client):
    """Two seeds on two workers, trained past any threshold: a second command with another
    threshold rescores the same trainings (no new run), and its figures follow the curves."""
    done = _seeds(tracking_uri, "0")
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = client.get_experiment_by_name("seeds-copy").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`ntmlab.pipeline` = 'seeds'")
    children = client.search_runs([experiment], "tags.`ntmlab.pipeline` = 'train'")
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    assert {run.info.status for run in children} == {"FINISHED"}
    assert parent.data.metrics["success_rate"] == 0.0, "no tiny LSTM copies perfectly"

    curves = {
        run.data.params["resolved.seed"]: client.get_metric_history(
            run.info.run_id, "val_bits_per_seq"
        )
        for run in children
    }
    best = sorted(min(point.value for point in curve) for curve in curves.values())
    assert best[0] < best[1], best
    between = (best[0] + best[1]) / 2
    for _ in range(2):  # the second time, the study is already scored at this threshold
        done = _seeds(tracking_uri, str(between))
        assert done.returncode == 0, done.stderr[-3000:]
        (again,) = client.search_runs([experiment], "tags.`ntmlab.pipeline` = 'seeds'")
        assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
        assert len(client.search_runs([experiment], "tags.`ntmlab.pipeline` = 'train'")) == 2
        assert again.data.metrics["success_rate"] == 0.5
        assert again.data.metrics["seeds_reached"] == 1
        assert again.data.tags["ntmlab.seeds_threshold"] == str(between)
        reached = next(c for c in curves.values() if min(p.value for p in c) <= between)
        first = min(point.step for point in reached if point.value <= between)
        assert again.data.metrics["median_episodes_to_threshold"] == first * 64
    files = set(artifact_paths(client, parent.info.run_id))
    assert {"seeds/summary.csv", "seeds/summary.md", "seeds/curves.png"} <= files
    assert "| 0 |" in again.data.tags["mlflow.note.content"]
