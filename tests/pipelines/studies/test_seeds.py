"""The seeds pipeline: its options, its study identity, and a killed study resumed."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.common.config import ConfigError, config_argv, parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.studies.seed_summary import SeedRow, summary_markdown, summary_metrics
from pipelines.studies.seeds import SeedsConfig, parse_seeds, run_commands, study_key
from pipelines.tracking.runs import PIPELINE_TAG
from tests.conftest import TINY_LSTM_ARGS, CommandWatcher, subprocess_env

STUDY = ["--seeds", "0-1", "--workers", "1", "--train_past", "true", *TINY_LSTM_ARGS]


def test_seeds_are_ranges_lists_or_both_each_once():
    assert parse_seeds("0-3") == (0, 1, 2, 3)
    assert parse_seeds("5,2-3,3") == (5, 2, 3)
    for bad in ("a", "3-1", "1-", "-2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_a_study_refuses_the_options_it_sets_itself():
    for option, value in (("--stop_at", "0.1"), ("--seed", "3"), ("--register_as", "x")):
        with pytest.raises(ConfigError, match=option):
            parse_config(SeedsConfig, [*STUDY, option, value])


def test_the_threshold_and_episodes_resolve_from_the_task_and_batch():
    config = parse_config(SeedsConfig, ["--task", "repeat_copy", "--episodes", "1000"])
    assert config.threshold == 0.5
    assert config.train.trainer.max_steps == -(-1000 // config.train.data.batch_size)


def test_the_study_key_ignores_seeds_and_workers_and_a_threshold_it_does_not_stop_at():
    key = study_key(parse_config(SeedsConfig, STUDY))
    assert study_key(parse_config(SeedsConfig, [*STUDY, "--seeds", "0-9", "--workers", "2"])) == key
    assert study_key(parse_config(SeedsConfig, [*STUDY, "--threshold", "3"])) == key
    assert study_key(parse_config(SeedsConfig, [*STUDY, "--lr", "1e-3"])) != key
    stopping = [*STUDY, "--train_past", "false"]
    assert study_key(parse_config(SeedsConfig, [*stopping, "--threshold", "3"])) != study_key(
        parse_config(SeedsConfig, stopping)
    )


def test_a_config_passes_to_a_child_process_exactly():
    config = parse_config(TrainConfig, [*TINY_LSTM_ARGS, "--lr", "0.0003", "--stop_at", ""])
    assert parse_config(TrainConfig, config_argv(config)) == config


def test_only_seeds_that_reached_count_toward_the_episodes():
    rows = [
        SeedRow(0, "a", "FINISHED", True, 6400, 10.0, 0.0, {"L5": 1.0}),
        SeedRow(1, "b", "FINISHED", False, None, None, 3.0, {"L5": 0.5}),
        SeedRow(2, "c", "FAILED"),
        SeedRow(3, "d", "FINISHED", True, 12800, 30.0, 0.0, {"L5": 0.9}),
    ]
    metrics = summary_metrics(rows, ["L5"])
    assert metrics["success_rate"] == 0.5 and metrics["seeds_reached"] == 2
    assert metrics["median_episodes_to_threshold"] == 9600
    assert metrics["p90_episodes_to_threshold"] == pytest.approx(6400 + 0.9 * 6400)
    assert metrics["median_seconds_to_threshold"] == 20.0
    assert metrics["median_bit_acc_L5"] == 0.9 and metrics["min_bit_acc_L5"] == 0.5


def test_the_table_names_the_step_of_each_seeds_logged_model():
    """A checkpoint-selection study reads which validation each seed's model came from."""
    rows = [SeedRow(0, "a", "FINISHED", True, 6400, 10.0, 0.0, {"L5": 1.0}, best_step=1400)]
    header, _, row = summary_markdown(rows, ["L5"], 0.1).splitlines()[2:5]
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert cells["model step"] == "1400" and cells["bit acc L5 %"] == "100.00"


def _children(client, parent_id):
    experiment = client.get_run(parent_id).info.experiment_id
    found = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'"
    return client.search_runs([experiment], found)


def _studies(client, experiment):
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], f"tags.`{PIPELINE_TAG}` = 'seeds'")


def _study(client, experiment):
    (parent,) = _studies(client, experiment)
    return parent


def _a_seed_has_validated(client, experiment):
    parents = _studies(client, experiment)
    return bool(parents) and any(
        "val_bits_per_seq" in run.data.metrics for run in _children(client, parents[0].info.run_id)
    )


def _table(client, parent):
    return client.download_artifacts(parent.info.run_id, "seeds/summary.csv")


@pytest.mark.slow
def test_a_killed_study_resumes_to_the_table_of_an_uninterrupted_one(client, tracking_uri):
    """SIGTERM while a seed trains: every run ends KILLED, none RUNNING; the same command
    again resumes the killed seed and trains the missing one, to the same table (runs aside)
    as a study that was never interrupted."""
    budget = ["--max_steps", "100", "--batches_per_epoch", "20"]
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking_uri)
    reference = CommandWatcher(
        "pipelines.seeds", [*STUDY, *budget, "--experiment_name", "ref"], env
    )
    assert reference.finish(timeout_s=300) == 0, reference.stderr[-3000:]

    args = [*STUDY, *budget, "--experiment_name", "killed"]
    study = CommandWatcher("pipelines.seeds", args, env)
    deadline = time.monotonic() + 120
    while not _a_seed_has_validated(client, "killed"):
        assert study.process.poll() is None and time.monotonic() < deadline, study.stderr[-3000:]
        time.sleep(0.5)
    study.process.send_signal(signal.SIGTERM)
    assert study.finish(timeout_s=120) == 128 + signal.SIGTERM, study.stderr[-3000:]
    parent = _study(client, "killed")
    assert parent.info.status == "KILLED"
    statuses = [run.info.status for run in _children(client, parent.info.run_id)]
    assert "KILLED" in statuses and "RUNNING" not in statuses, statuses

    again = CommandWatcher("pipelines.seeds", args, env)
    assert again.finish(timeout_s=300) == 0, again.stderr[-3000:]
    parent = _study(client, "killed")
    assert parent.info.status == "FINISHED"
    children = _children(client, parent.info.run_id)
    assert len(children) == 2 and {run.info.status for run in children} == {"FINISHED"}

    def rows(run):
        lines = Path(_table(client, run)).read_text().splitlines()
        return [line.split(",", 1)[1] for line in lines]  # the run ids differ

    assert rows(parent) == rows(_study(client, "ref"))
    steps = {int(run.data.metrics["best_step"]) for run in children}
    header, *lines = Path(_table(client, parent)).read_text().splitlines()
    column = header.split(",").index("model step")
    assert {int(line.split(",")[column]) for line in lines} == steps


def test_a_seed_that_crashes_does_not_stop_the_others(tmp_path):
    done = tmp_path / "done"
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    finish = [sys.executable, "-c", f"open({str(done)!r}, 'w').close()"]
    run_commands([crash, finish], workers=1, env=dict(os.environ))
    assert done.exists()
