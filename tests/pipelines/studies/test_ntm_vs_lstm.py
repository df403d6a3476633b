"""The ntm_vs_lstm reference experiment end to end with a budget of seconds."""

from pathlib import Path

import pytest

from pipelines.common.config import parse_config
from pipelines.experiments import main
from pipelines.studies.ntm_vs_lstm import NtmVsLstmConfig, child_config
from tests.conftest import artifact_paths

TINY = [
    "--budget_minutes",
    "0.04",
    "--batch_size",
    "8",
    "--batches_per_epoch",
    "10",
    "--val_size",
    "16",
    "--test_size",
    "8",
    "--test_lengths",
    "5,30",
    "--progress_bar",
    "false",
]


def test_one_parent_two_trained_children_and_one_comparison(client):
    assert main(TINY) == 0
    experiment = client.get_experiment_by_name("ntm_vs_lstm-copy")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId")]
    assert parent.info.status == "FINISHED" and parent.data.tags["ntmlab.pipeline"] == "ntm_vs_lstm"
    assert sorted(child.data.params["model.name"] for child in children) == ["lstm", "ntm"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        model = child.data.params["model.name"]
        assert child.data.params["resolved.seed"] == "0"
        assert child.data.params["data.test_lengths"] == "5,30"
        # the parent's table repeats each child's own test scores
        for label in ("L5", "L30"):
            assert parent.data.metrics[f"{model}/bit_acc_{label}"] == pytest.approx(
                child.data.metrics[f"bit_acc_{label}"]
            )
        assert parent.data.metrics[f"{model}/param_count"] == child.data.metrics["param_count"]
    files = set(artifact_paths(client, parent.info.run_id))
    assert files == {
        "evaluation/table.csv",
        "evaluation/table.json",
        "evaluation/accuracy_vs_length.png",
        "evaluation/summary.md",
    }
    summary = client.download_artifacts(parent.info.run_id, "evaluation/summary.md")
    text = Path(summary).read_text()
    assert text.startswith("| | ntm | lstm |") and "bit acc (bits/seq) at 30" in text
    assert parent.data.tags["mlflow.note.content"] == text, "the table is the description"
    # both models registered, each under <model>-<task>, champion on its only version
    for child in children:
        name = f"{child.data.params['model.name']}-copy"
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.run_id == child.info.run_id
        assert champion.tags["ntmlab.ntm_vs_lstm_run_id"] == parent.info.run_id


def test_bad_input_is_refused_before_any_run(client, capsys):
    assert main([*TINY, "--test_lengths", "200"]) == 2
    assert "ntm: copy at length 200 needs 200 memory rows" in capsys.readouterr().err
    assert client.get_experiment_by_name("ntm_vs_lstm-copy") is None


def test_stop_at_ends_each_model_at_its_first_validation_under_the_threshold(client):
    # a threshold above any copy error (at most 160 bits at length 20): both models stop at
    # their first validation, long before the budget (under a minute, so the NTM is not
    # compiled: --compile's default skips runs too short to pay for it)
    args = [*TINY, "--budget_minutes", "0.9", "--stop_at", "1000"]
    assert main(args) == 0
    experiment = client.get_experiment_by_name("ntm_vs_lstm-copy")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId")]
    assert parent.data.params["resolved.stop_at"] == "1000.0" and len(children) == 2
    for child in children:
        assert child.data.params["trainer.stop_at"] == "1000.0"
        assert child.data.metrics["reached_stop_at"] == 1.0
        assert child.data.metrics["steps_to_stop_at"] == 10  # --batches_per_epoch
        assert child.data.metrics["train_time_s"] < 54


def test_each_model_trains_where_the_experiment_is_placed():
    config = parse_config(
        NtmVsLstmConfig, ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    )
    for model in ("ntm", "lstm"):
        trainer = child_config(config, model, "e").trainer
        assert (trainer.accelerator, trainer.devices, trainer.strategy) == ("cpu", "2", "ddp")
