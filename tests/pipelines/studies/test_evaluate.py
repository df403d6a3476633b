"""The evaluate pipeline against a temp sqlite store, on models trained in seconds."""

import json
from pathlib import Path

import mlflow
import pytest
import torch

from pipelines.common.config import parse_config
from pipelines.evaluate import main
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from pipelines.studies.evaluate import EVALUATED_RUNS_TAG, EVALUATION_TAG
from pipelines.tracking.registry import register
from tests.conftest import TINY_LSTM_ARGS, artifact_paths


@pytest.fixture
def trained(client):
    """A finished tiny LSTM train run (tested at lengths 5 and 30 on 20 sequences)."""
    return train(parse_config(TrainConfig, TINY_LSTM_ARGS)).run_id


def _evaluation_runs(client, experiment="copy"):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return [
        run
        for run in client.search_runs([experiment_id])
        if run.data.tags.get("ntmlab.pipeline") == "evaluate"
    ]


def test_evaluation_reads_the_model_back_and_reproduces_the_train_scores(client, trained):
    assert main(["--run_ids", trained, "--lengths", "5,30", "--test_size", "20"]) == 0
    (evaluation,) = _evaluation_runs(client)
    assert evaluation.info.status == "FINISHED"
    trained_run = client.get_run(trained)
    # same seed, same test sets, same (best) weights: the scores the train run logged
    for name in ("bit_acc_L5", "bits_per_seq_L5", "bit_acc_L30", "bits_per_seq_L30"):
        assert evaluation.data.metrics[name] == pytest.approx(trained_run.data.metrics[name])
    assert evaluation.data.tags[EVALUATED_RUNS_TAG] == trained
    assert trained_run.data.tags[EVALUATION_TAG] == evaluation.info.run_id
    assert evaluation.data.params["resolved.lengths"] == "5,30"
    files = set(artifact_paths(client, evaluation.info.run_id))
    assert {
        "evaluation/table.csv",
        "evaluation/table.json",
        "evaluation/accuracy_vs_length.png",
    } <= files
    table = client.download_artifacts(evaluation.info.run_id, "evaluation/table.csv")
    lines = Path(table).read_text().splitlines()
    assert lines[0].startswith("model,model_type,run_id,param_count,task,length")
    assert len(lines) == 3 and all(f",{trained}," in line for line in lines[1:])


def test_several_models_share_one_run_with_prefixed_metrics(client, trained):
    other = train(parse_config(TrainConfig, [*TINY_LSTM_ARGS, "--seed", "1"])).run_id
    assert main(["--run_ids", f"{trained},{other}", "--lengths", "5", "--test_size", "10"]) == 0
    (evaluation,) = _evaluation_runs(client)
    names = {client.get_run(run_id).info.run_name for run_id in (trained, other)}
    assert {f"{name}/bit_acc_L5" for name in names} <= set(evaluation.data.metrics)


def test_a_checkpoint_file_evaluates_like_its_run_and_a_corrupt_one_is_refused(
    client, trained, tmp_path, capsys
):
    best = client.download_artifacts(trained, "checkpoints/best.ckpt", str(tmp_path))
    assert main(["--checkpoints", best, "--lengths", "5", "--test_size", "20"]) == 0
    (evaluation,) = _evaluation_runs(client)
    # a user at a terminal sees the table and where the run is, not only the MLflow UI
    printed = capsys.readouterr().out
    assert "| parameters |" in printed and "| bit acc (bits/seq) at 5 |" in printed
    run_id, experiment = evaluation.info.run_id, evaluation.info.experiment_id
    link = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}"
    assert f"evaluate: run {run_id}: {link}" in printed
    expected = client.get_run(trained).data.metrics["bit_acc_L5"]
    assert evaluation.data.metrics["bit_acc_L5"] == pytest.approx(expected)

    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(Path(best).read_bytes()[:1000])
    assert main(["--checkpoints", str(corrupt)]) == 2
    assert "is corrupt or unreadable" in capsys.readouterr().err
    assert len(_evaluation_runs(client)) == 1, "nothing logged for the bad checkpoint"


def test_missing_run_and_run_without_a_model_are_clear_errors(client, trained, capsys):
    assert main(["--run_ids", "0123456789abcdef"]) == 2
    assert "no run '0123456789abcdef'" in capsys.readouterr().err
    bare = client.create_run(client.get_experiment_by_name("copy").experiment_id)
    client.set_terminated(bare.info.run_id)
    assert main(["--run_ids", bare.info.run_id]) == 2
    assert f"run {bare.info.run_id} logged no model" in capsys.readouterr().err
    assert main([]) == 2
    assert "give --run_ids, --models or --checkpoints" in capsys.readouterr().err
    assert main(["--models", "ntm-copy"]) == 2
    assert "'ntm-copy' is not a runs:/ or models:/ URI" in capsys.readouterr().err
    assert main(["--models", "models:/nothing-here@champion"]) == 2
    assert "no MLflow Model at models:/nothing-here@champion" in capsys.readouterr().err
    assert _evaluation_runs(client) == []


def test_model_uris_and_runs_an_older_version_logged_evaluate_alike(client, trained, tmp_path):
    """``runs:/`` and ``models:/<name>@champion`` URIs, and a run with only the ``model/``
    files (weights.pt + config.json) earlier versions logged, give the train run's scores."""
    expected = client.get_run(trained).data.metrics["bit_acc_L30"]
    register(client, trained, "lstm-copy", "val_bits_per_seq", 1.0, "minimize")
    legacy = client.create_run(client.get_experiment_by_name("copy").experiment_id).info.run_id
    core = mlflow.pytorch.load_model(f"runs:/{trained}/model")
    torch.save(core.state_dict(), tmp_path / "weights.pt")
    info = mlflow.models.get_model_info(f"runs:/{trained}/model")
    (tmp_path / "config.json").write_text(json.dumps(info.metadata["ntmlab"]))
    for name in ("weights.pt", "config.json"):
        client.log_artifact(legacy, str(tmp_path / name), "model")
    client.set_terminated(legacy)
    sources = [f"runs:/{trained}/model", "models:/lstm-copy@champion"]
    assert (
        main(
            [
                "--models",
                ",".join(sources),
                "--run_ids",
                legacy,
                "--lengths",
                "30",
                "--test_size",
                "20",
            ]
        )
        == 0
    )
    (evaluation,) = _evaluation_runs(client)
    scores = [v for k, v in evaluation.data.metrics.items() if k.endswith("/bit_acc_L30")]
    assert scores == pytest.approx([expected] * 3)
    assert "lstm-copy_champion/bit_acc_L30" in evaluation.data.metrics
    assert "| bit acc (bits/seq) at 30 |" in evaluation.data.tags["mlflow.note.content"]


def test_bad_lengths_are_refused_before_anything_runs(client, trained, capsys):
    assert main(["--run_ids", trained, "--lengths", "0"]) == 2
    assert "--lengths: must be >= 1" in capsys.readouterr().err
    assert main(["--run_ids", trained, "--repeats", "3"]) == 2
    assert "--repeats applies to repeat_copy, not copy" in capsys.readouterr().err
    assert _evaluation_runs(client) == []


def test_a_length_beyond_an_ntm_memory_is_refused(client, capsys):
    ntm = [
        "--model",
        "ntm",
        "--memory_slots",
        "24",
        "--memory_width",
        "4",
        "--controller_size",
        "8",
        "--max_steps",
        "4",
        "--batches_per_epoch",
        "2",
        "--val_size",
        "8",
        "--test_lengths",
        "5",
        "--test_size",
        "4",
        "--max_len",
        "5",
    ]
    run_id = train(parse_config(TrainConfig, ntm)).run_id
    assert main(["--run_ids", run_id, "--lengths", "10,40"]) == 2
    assert "copy at length 40 needs 40 memory rows; ntm-copy-" in capsys.readouterr().err
    assert _evaluation_runs(client) == []
