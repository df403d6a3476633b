"""The MNIST classify pipeline and the unfolded_grid entry, on tiny subsets of the real data."""

from pathlib import Path

import mlflow
import pytest
import torch

from pipelines.classify import main as classify_main
from pipelines.common.config import parse_config
from pipelines.mnist.build import make_classifier
from pipelines.mnist.config import ClassifyConfig
from pipelines.mnist.fit import epochs_trained
from pipelines.studies.unfolded_grid import UnfoldedGridConfig, cells
from pipelines.tracking.datasets import raw_files_digest
from pipelines.tracking.store import run_dir
from pipelines.unfolded_grid import main as grid_main
from tests.conftest import artifact_paths

TINY = [
    "--train_subset",
    "256",
    "--epochs",
    "1",
    "--batch_size",
    "64",
    "--grad_norm_every",
    "1",
    "--progress_bar",
    "false",
]


def test_unfolded_lstm_run_logs_accuracy_gradient_norms_and_diagnostic_plots(client, mnist_dir):
    args = [*TINY, "--depth", "3", "--hidden_size", "16", "--data_dir", str(mnist_dir)]
    assert classify_main(args) == 0
    (run,) = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    expected = (
        "test_acc",
        "val_acc",
        "seconds_per_epoch",
        "param_count",
        "grad_norm/layer_1",
        "grad_norm/layer_3",
        "grad_norm_ratio_first_last",
    )
    for name in expected:
        assert name in metrics, name
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert metrics["epochs_trained"] == 1.0
    assert metrics["seconds_per_epoch"] == pytest.approx(metrics["train_time_s"])
    history = client.get_metric_history(run.info.run_id, "grad_norm/layer_2")
    assert sorted(m.step for m in history) == [0, 1, 2, 3], "every step, at its own step"
    files = set(artifact_paths(client, run.info.run_id))
    assert {"plots/grad_norm_vs_layer.png", "plots/first_layer_filters.png"} <= files
    assert not run_dir(run.info.run_id).exists(), "uploaded, so the local copy is gone"
    # the model as an MLflow Model, the data as dataset inputs, a description, system metrics
    core = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert core(torch.zeros(3, 784)).shape == (3, 10)
    inputs = {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"mnist-flat-train", "mnist-flat-validation", "mnist-flat-test"}
    assert inputs["mnist-flat-train"] == raw_files_digest(mnist_dir / "MNIST" / "raw")
    assert "unfolded_lstm on MNIST flat: test accuracy" in run.data.tags["mlflow.note.content"]
    assert "system/cpu_utilization_percentage" in metrics


@pytest.mark.parametrize(
    ("model", "extra"),
    [("bn_lstm", ["--view", "rows"]), ("lstm", ["--view", "permuted"]), ("mlp", []), ("cnn", [])],
)
def test_every_classifier_trains_on_its_view(client, mnist_dir, model, extra):
    args = [
        *TINY,
        "--model",
        model,
        "--hidden_size",
        "8",
        "--depth",
        "2",
        *extra,
        "--data_dir",
        str(mnist_dir),
        "--train_subset",
        "64",
    ]
    if model == "lstm":
        args += ["--max_minutes", "0.05"]  # 784 steps per image: a few batches are enough
    assert classify_main(args) == 0


def test_bad_view_and_missing_data_are_clear_errors(client, tmp_path, capsys, monkeypatch):
    assert classify_main(["--model", "cnn", "--view", "rows"]) == 2
    assert "--view rows does not fit --model cnn" in capsys.readouterr().err
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "download", lambda self: (_ for _ in ()).throw(RuntimeError()))
    assert classify_main(["--data_dir", str(tmp_path)]) == 2
    assert "MNIST is not in" in capsys.readouterr().err


def test_grid_runs_a_parent_with_one_child_per_cell_and_a_summary(client, mnist_dir):
    args = [
        "--epochs",
        "1",
        "--depths",
        "2,3",
        "--hidden_sizes",
        "8",
        "--dropouts",
        "0",
        "--tied",
        "false",
        "--train_subset",
        "128",
        "--batch_size",
        "64",
        "--progress_bar",
        "false",
        "--data_dir",
        str(mnist_dir),
    ]
    assert grid_main(args) == 0
    runs = client.search_runs([client.get_experiment_by_name("unfolded_grid").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("ntmlab.pipeline") == "unfolded_grid"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["resolved.depth"] for r in children) == ["2", "3"]
    assert all(r.info.status == "FINISHED" for r in runs)
    summary = client.download_artifacts(parent.info.run_id, "grid/summary.csv")
    lines = Path(summary).read_text().splitlines()
    assert lines[0].startswith("dropout,tied,depth,hidden_size,test_acc") and len(lines) == 3


def test_a_run_cut_short_by_the_clock_reports_seconds_per_whole_epoch():
    assert epochs_trained(steps=215, batches_per_epoch=860) == pytest.approx(0.25)
    assert epochs_trained(steps=1720, batches_per_epoch=860) == pytest.approx(2.0)
    assert epochs_trained(steps=0, batches_per_epoch=float("inf")) == 1.0


def test_every_grid_cell_trains_where_the_grid_is_placed():
    config = parse_config(
        UnfoldedGridConfig, ["--depths", "2,3", "--devices", "2", "--strategy", "ddp"]
    )
    assert [(c.placement.devices, c.placement.strategy) for c in cells(config)] == [
        ("2", "ddp")
    ] * len(cells(config))
    cells(config)[0].placement.devices = "1"
    assert config.placement.devices == "2", "each cell has its own copy"


@pytest.mark.parametrize(
    ("argv", "compiled"),
    [
        (["--model", "bn_lstm", "--view", "pixels"], True),
        (["--model", "bn_lstm", "--view", "permuted"], True),
        (["--model", "bn_lstm", "--view", "rows"], False),
        (["--model", "bn_lstm", "--view", "pixels", "--compile", "false"], False),
        (["--model", "bn_lstm", "--view", "pixels", "--batch_norm", "false"], False),
        (["--model", "lstm", "--view", "pixels"], False),
    ],
)
def test_the_bn_lstm_compiles_its_step_by_default_on_784_step_views(argv, compiled):
    assert parse_config(ClassifyConfig, argv).compile is compiled


def test_compile_is_refused_for_a_model_without_a_compiled_step(client, capsys):
    assert classify_main(["--model", "mlp", "--compile", "true"]) == 2
    assert (
        "only the bn_lstm (with --batch_norm true) has a compiled step" in capsys.readouterr().err
    )


def test_the_unfolded_init_settings_reach_the_model_and_are_refused_elsewhere(client, capsys):
    config = parse_config(
        ClassifyConfig, ["--depth", "3", "--bn_gamma_h", "0.02", "--input_init_gain", "2"]
    )
    model = make_classifier(config, (784,))
    assert torch.equal(model.norm_h.gamma, torch.full_like(model.norm_h.gamma, 0.02))
    torch.manual_seed(0)
    plain = make_classifier(parse_config(ClassifyConfig, ["--depth", "3"]), (784,))
    torch.manual_seed(0)
    scaled = make_classifier(config, (784,))
    torch.testing.assert_close(scaled.input_weight, 2 * plain.input_weight)
    assert classify_main(["--model", "mlp", "--bn_gamma_h", "0.05"]) == 2
    assert "apply to --model unfolded_lstm only, not mlp" in capsys.readouterr().err
