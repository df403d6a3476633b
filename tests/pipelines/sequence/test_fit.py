"""The train pipeline called in-process against a temp sqlite store."""

import json
import subprocess
import sys

import mlflow
import pytest
import torch

from datamodules.synthetic import CopyTask, SyntheticDataModule
from pipelines.common.config import parse_config
from pipelines.sequence.build import fresh_core_state, make_core, make_task
from pipelines.sequence.config import TrainConfig, long_val_lengths
from pipelines.sequence.fit import train
from pipelines.tracking.checkpoints import load_checkpoint
from pipelines.train import main
from tests.conftest import ROOT, TINY_LSTM_ARGS, artifact_paths, subprocess_env

TINY = TINY_LSTM_ARGS


def test_train_logs_a_complete_finished_run(client):
    result = train(parse_config(TrainConfig, TINY))
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"lstm-copy-{result.run_id[:8]}"
    assert client.get_experiment(run.info.experiment_id).name == "copy"
    assert run.data.params["model.hidden_size"] == "16"
    assert run.data.params["optim.optimizer"] == "adam"
    metrics = run.data.metrics
    for name in (
        "train_loss",
        "val_loss",
        "val_bits_per_seq",
        "val_bit_acc",
        "param_count",
        "bit_acc_L5",
        "bits_per_seq_L30",
        "train_seq_per_s",
        "best_val_bits_per_seq",
        "val_long_bits_per_seq",
        "val_long_loss",
        "val_selection",
        "best_val_long_bits_per_seq",
    ):
        assert name in metrics, name
    assert metrics["param_count"] == sum(
        p.numel() for p in make_core(parse_config(TrainConfig, TINY).model, 9, 8).parameters()
    )
    val_steps = [m.step for m in client.get_metric_history(result.run_id, "val_bits_per_seq")]
    assert len(val_steps) == 2 and val_steps == sorted(val_steps)
    # where the fit's time went: disjoint parts inside its wall clock, and the logging calls
    # (some made inside a validation, which logs its metrics)
    parts = ("train_steps_time_s", "validation_time_s", "checkpoint_time_s")
    assert all(metrics[part] > 0 for part in [*parts, "logging_time_s"]), metrics
    assert sum(metrics[part] for part in parts) <= metrics["train_time_s"]
    assert metrics["logging_time_s"] <= metrics["train_time_s"]
    assert 0 < metrics["first_step_s"] <= metrics["train_steps_time_s"]
    assert len(client.get_metric_history(result.run_id, "train_loss")) >= 4
    files = artifact_paths(client, result.run_id)
    assert {
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "config/train_config.json",
        "plots/example_final.png",
    } <= set(files)
    assert sum(f.startswith("plots/example_step_") for f in files) == 2
    # MLflow-native: dataset inputs, a description, system metrics, a model-training experiment
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"copy-train", "copy-validation", "copy-long_validation", "copy-test"}
    contexts = {i.dataset.name: {t.key: t.value for t in i.tags} for i in inputs.values()}
    long_spec = json.loads(contexts["copy-long_validation"]["ntmlab.spec"])
    assert long_spec["lengths"] == list(long_val_lengths(parse_config(TrainConfig, TINY).data))
    assert contexts["copy-train"]["mlflow.data.context"] == "training"
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("lstm on copy: best validation ") and "at test length 30" in note
    kind = client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"


def test_the_training_data_digest_follows_the_task_spec_not_the_run(client):
    first = train(parse_config(TrainConfig, [*TINY, "--max_steps", "20"]))
    other_seed = train(parse_config(TrainConfig, [*TINY, "--max_steps", "20", "--seed", "1"]))
    again = train(parse_config(TrainConfig, [*TINY, "--max_steps", "20", "--hidden_size", "8"]))

    def digests(run_id):
        inputs = client.get_run(run_id).inputs.dataset_inputs
        return {i.dataset.name: i.dataset.digest for i in inputs}

    assert digests(first.run_id) == digests(again.run_id), "same data, same digests"
    assert digests(first.run_id)["copy-train"] != digests(other_seed.run_id)["copy-train"]


LOAD_OUTSIDE_THE_CHECKOUT = """
import sys
# forget this checkout: no editable install, no cwd, no repository root on the path
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "ditable" not in repr(h)]
sys.path[:] = [p for p in sys.path if p not in ("", ".", sys.argv[1])]
sys.path_importer_cache.clear()
import mlflow, torch
mlflow.set_tracking_uri(sys.argv[2])
model = mlflow.pytorch.load_model(sys.argv[3])
assert not sys.modules["models"].__file__.startswith(sys.argv[1] + "/models"), "shipped code"
with torch.no_grad():
    torch.save(model(torch.load(sys.argv[4])), sys.argv[5])
print(type(model).__name__, sys.modules["models"].__file__)
"""


def test_the_logged_model_loads_outside_the_checkout_and_reproduces_the_test_score(
    client, tracking_uri, tmp_path
):
    """``mlflow.pytorch.load_model("runs:/<id>/model")`` in a fresh process that cannot see
    this repository (the ``models`` package comes from the model's own ``code/``)."""
    result = train(parse_config(TrainConfig, TINY))
    data = SyntheticDataModule(CopyTask(), test_lengths=(5,), test_size=20, seed=0)
    (batch,) = data.test_batches(5)
    torch.save(batch.inputs, tmp_path / "inputs.pt")
    uri = f"runs:/{result.run_id}/model"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_OUTSIDE_THE_CHECKOUT,
            str(ROOT),
            tracking_uri,
            uri,
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "logits.pt"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(PYTHONPATH=""),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("LSTMSequenceModel ")
    logits = torch.load(tmp_path / "logits.pt")
    wrong = ((logits > 0) != (batch.targets > 0.5)) & batch.mask.unsqueeze(-1)
    bit_acc = 1 - wrong.sum().item() / (batch.mask.sum().item() * batch.targets.shape[-1])
    assert bit_acc == pytest.approx(client.get_run(result.run_id).data.metrics["bit_acc_L5"])
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.inputs[0].shape == (-1, -1, 9)
    assert info.metadata["ntmlab"]["config"]["model"]["hidden_size"] == 16
    assert info.flavors["python_function"]["code"] == "code"


def test_same_seed_reproduces_the_same_numbers(client):
    first = train(parse_config(TrainConfig, TINY))
    second = train(parse_config(TrainConfig, TINY))
    a = client.get_run(first.run_id).data.metrics
    b = client.get_run(second.run_id).data.metrics
    for name in ("val_loss", "val_bits_per_seq", "bit_acc_L30", "train_loss"):
        assert a[name] == pytest.approx(b[name], rel=1e-6), name


def test_bad_input_exits_2_with_one_line_and_no_run(client, capsys):
    assert main(["--model", "foo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train: error: --model: 'foo' is not allowed; choose one of: ntm, lstm"]
    assert client.search_experiments(filter_string="name = 'copy'") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategy", "ddp_spawn"], "--strategy: 'ddp_spawn' is not supported; use ddp"),
        (
            ["--accelerator", "gpu"] if not torch.cuda.is_available() else ["--devices", "-3"],
            "--num_nodes 1 --strategy auto: ",
        ),
        (["--bits", "100000000"], "training needs at least 1,283.0 GiB but this machine has"),
    ],
)
def test_placement_and_sizes_that_cannot_run_are_refused_up_front(client, capsys, argv, message):
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("train: error: ") and message in line
    assert client.search_experiments(filter_string="name = 'copy'") == []


def test_bad_input_fails_the_run_mlflow_run_started(client, monkeypatch, capsys):
    experiment = client.create_experiment("inherited")
    run = client.create_run(experiment)
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    assert main(["--min_len", "5", "--max_len", "3"]) == 2
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "FAILED"
    assert "--min_len (5) must not exceed --max_len (3)" in finished.data.tags["error"]


def test_crash_inside_training_ends_the_run_failed(client, monkeypatch):
    import pipelines.sequence.fit as train_module

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(train_module, "_log_model", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(parse_config(TrainConfig, TINY))
    (run,) = client.search_runs([client.get_experiment_by_name("copy").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: disk on fire"


NTM_TINY = [
    "--model",
    "ntm",
    "--memory_slots",
    "16",
    "--memory_width",
    "6",
    "--controller_size",
    "16",
    "--max_steps",
    "20",
    "--batches_per_epoch",
    "10",
    "--val_size",
    "40",
    "--test_lengths",
    "5",
    "--test_size",
    "20",
    "--plot_every_n_val",
    "1",
    "--max_len",
    "5",
    "--batch_size",
    "16",
]


def test_ntm_run_logs_memory_figures_and_only_its_own_params(client):
    result = train(parse_config(TrainConfig, NTM_TINY))
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.memory_slots"] == "16"
    assert "model.hidden_size" not in run.data.params, "LSTM options do not describe an NTM"
    files = set(artifact_paths(client, result.run_id))
    assert {"plots/memory_final.png", "plots/memory_step_0000010.png"} <= files


def test_stop_at_ends_training_early_and_records_when(client):
    # bits_per_seq is never negative, so a threshold of 1e9 is met at the first validation
    result = train(parse_config(TrainConfig, [*NTM_TINY, "--stop_at", "1e9"]))
    metrics = client.get_run(result.run_id).data.metrics
    assert result.steps == 10
    assert metrics["reached_stop_at"] == 1.0
    assert metrics["steps_to_stop_at"] == 10
    assert metrics["sequences_to_stop_at"] == 160


def test_a_stalled_start_restarts_from_fresh_weights_of_its_own_seed(client):
    """At lr 1e-12 nothing improves, so with patience 1 the start stalls at its second
    validation (step 20) and restarts; the weights then barely move, so the last checkpoint
    (step 40) holds the fresh weights of restart 1."""
    argv = [
        *NTM_TINY,
        "--max_steps",
        "40",
        "--lr",
        "1e-12",
        "--restart_patience",
        "1",
        "--restart_above",
        "0",
        "--compile",
        "false",
    ]
    config = parse_config(TrainConfig, argv)
    result = train(config)
    run = client.get_run(result.run_id)
    history = client.get_metric_history(result.run_id, "restarts")
    assert run.data.metrics["restarts"] == 1.0
    # logged when it happened, and the run's total at the end
    assert [(m.step, m.value) for m in history] == [(20, 1.0), (40, 1.0)]
    last = load_checkpoint(client.download_artifacts(result.run_id, "checkpoints/last.ckpt"))
    last = last["state_dict"]
    fresh = fresh_core_state(config, make_task(config.data), 1)
    initial = fresh_core_state(config, make_task(config.data), 0)
    assert any(not torch.equal(fresh[k], initial[k]) for k in fresh), "a new seed's weights"
    for name, value in fresh.items():
        torch.testing.assert_close(last[f"model.{name}"], value, atol=1e-9, rtol=0)


def test_a_restart_begins_the_length_curriculum_again_and_the_run_logs_where_it_stands(client):
    """Copy 1..5 with one length more every 10 steps: 1..2 first, the whole range from step 30.
    At lr 1e-12 the start stalls, but it is judged only from step 30 on, so the validation at
    step 20 (the first that could restart it) does not, and the one at step 30 does; the new
    start trains on 1..2 again."""
    argv = [
        *NTM_TINY,
        "--max_steps",
        "40",
        "--lr",
        "1e-12",
        "--restart_patience",
        "1",
        "--restart_above",
        "0",
        "--compile",
        "false",
        "--min_len",
        "1",
        "--curriculum_steps_per_length",
        "10",
        "--log_every_n_steps",
        "1",
    ]
    result = train(parse_config(TrainConfig, argv))
    restarts = client.get_metric_history(result.run_id, "restarts")
    assert [(m.step, m.value) for m in restarts] == [(30, 1.0), (40, 1.0)]
    logged = client.get_metric_history(result.run_id, "curriculum_max_len")
    uppers = [int(m.value) for m in sorted(logged, key=lambda m: m.step)]
    assert uppers == [2] * 10 + [3] * 10 + [4] * 10 + [2] * 10


def test_the_ntm_recipes_recover_from_setbacks_where_measured_and_other_models_do_not():
    copy = parse_config(TrainConfig, []).trainer
    assert (copy.restart_patience, copy.restart_above, copy.relapse_factor) == (8, 0.1, 2.0)
    recall = parse_config(TrainConfig, ["--task", "associative_recall"]).trainer
    assert (recall.restart_patience, recall.restart_min_improvement) == (3, 0.25)
    repeat = parse_config(TrainConfig, ["--task", "repeat_copy"]).trainer
    assert (repeat.restart_patience, repeat.relapse_factor) == (0, 0.0)
    lstm = parse_config(TrainConfig, ["--model", "lstm"]).trainer
    assert (lstm.restart_patience, lstm.relapse_factor) == (0, 0.0)


@pytest.mark.parametrize("task", ["repeat_copy", "associative_recall"])
@pytest.mark.parametrize("model", ["ntm", "lstm"])
def test_every_model_trains_on_every_task_with_the_task_defaults(client, task, model):
    """No special cases: widths, scored steps and test lengths all come from the task."""
    small = ["--memory_slots", "40", "--memory_width", "6", "--controller_size", "16"]
    if model == "lstm":
        small = ["--hidden_size", "16", "--num_layers", "1"]
    args = [
        "--model",
        model,
        "--task",
        task,
        *small,
        "--max_steps",
        "6",
        "--batch_size",
        "4",
        "--batches_per_epoch",
        "3",
        "--val_size",
        "8",
        "--test_size",
        "4",
    ]
    result = train(parse_config(TrainConfig, args))
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    expected = {"repeat_copy": ("L10", "L20"), "associative_recall": ("L6", "L12")}[task]
    for label in expected:
        assert 0.0 <= run.data.metrics[f"bit_acc_{label}"] <= 1.0
    bits = {"repeat_copy": "8", "associative_recall": "6"}[task]
    assert run.data.params["data.bits"] == bits
    assert ("data.max_repeats" in run.data.params) == (task == "repeat_copy")


def test_a_memory_too_small_for_the_test_lengths_is_refused_up_front(capsys):
    args = ["--model", "ntm", "--task", "associative_recall", "--memory_slots", "30"]
    assert main(args) == 2
    assert "associative_recall at length 12 needs 36 memory rows but --memory_slots is 30" in (
        capsys.readouterr().err
    )


def test_plateau_decay_halves_the_logged_rate_when_validation_stops_improving(client):
    # at lr 1e-12 the weights do not move, so no validation after the first is a new best
    argv = [*NTM_TINY, "--max_steps", "40", "--lr", "1e-12", "--lr_decay_patience", "1"]
    result = train(parse_config(TrainConfig, argv))
    history = client.get_metric_history(result.run_id, "lr")
    rates = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert rates == pytest.approx([1e-12, 1e-12, 1e-12, 5e-13], rel=1e-6)


def test_last_checkpoint_is_the_final_step_when_validation_never_improves(client, tmp_path):
    """A rate of 1e-30 keeps every validation equal to the first: best.ckpt stays at the
    first validation, last.ckpt (local, then the run's artifact) is the final step."""
    argv = [*TINY, "--max_steps", "100", "--batches_per_epoch", "20", "--lr", "1e-30"]
    result = train(parse_config(TrainConfig, argv))
    checkpoints = {}
    for name in ("last", "best"):
        path = client.download_artifacts(result.run_id, f"checkpoints/{name}.ckpt", str(tmp_path))
        checkpoints[name] = load_checkpoint(path)["global_step"]
    assert checkpoints == {"last": 100, "best": 20}


def _histories(client, run_id: str, *keys: str) -> dict[str, dict[int, float]]:
    return {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in keys}


def test_without_a_long_set_the_first_of_equal_validations_is_kept(client):
    """A copy model reaches 0 wrong bits long before it generalizes; measured on 10 seeds, the
    later, more confident checkpoints of a tie generalized worse, so the first is kept."""
    argv = [*TINY, "--max_steps", "200", "--batches_per_epoch", "20", "--max_len", "1"]
    argv += ["--test_lengths", "1", "--lr", "1e-2", "--long_val_size", "0"]
    result = train(parse_config(TrainConfig, argv))
    history = _histories(client, result.run_id, "val_bits_per_seq")["val_bits_per_seq"]
    least = min(history.values())
    tied = [step for step in sorted(history) if history[step] == least]
    assert len(tied) >= 2, "the run must tie for the test to mean anything"
    best = client.download_artifacts(result.run_id, "checkpoints/best.ckpt")
    assert load_checkpoint(best)["global_step"] == tied[0]
    assert client.get_run(result.run_id).data.metrics["best_step"] == tied[0]


def test_the_long_validation_set_decides_between_validations(client):
    """With a long set the kept checkpoint is the lowest sum of both sets' bits/seq, ties to
    the lower long-set loss; a run that ties on the training lengths must be decided by it."""
    argv = [*TINY, "--max_steps", "200", "--batches_per_epoch", "20", "--max_len", "1"]
    argv += ["--test_lengths", "1", "--lr", "1e-2", "--long_val_max_len", "3"]
    result = train(parse_config(TrainConfig, argv))
    keys = ("val_bits_per_seq", "val_long_bits_per_seq", "val_long_loss", "val_selection")
    history = _histories(client, result.run_id, *keys)
    steps = sorted(history["val_bits_per_seq"])
    least = min(history["val_bits_per_seq"].values())
    assert sum(history["val_bits_per_seq"][step] == least for step in steps) >= 2
    tie_step = 1 / (2 * 50 * 50)  # tanh(loss) / (2 n m): 50 sequences in each set (--val_size)
    for step in steps:
        total = history["val_bits_per_seq"][step] + history["val_long_bits_per_seq"][step]
        assert 0 <= history["val_selection"][step] - total <= tie_step + 1e-6
    expected = min(
        steps,
        key=lambda step: (
            history["val_bits_per_seq"][step] + history["val_long_bits_per_seq"][step],
            history["val_long_loss"][step],
        ),
    )
    best = client.download_artifacts(result.run_id, "checkpoints/best.ckpt")
    assert load_checkpoint(best)["global_step"] == expected
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics["best_step"] == expected
    assert metrics["best_val_long_bits_per_seq"] == pytest.approx(
        history["val_long_bits_per_seq"][expected], abs=1e-6
    )


def test_the_logged_model_carries_the_final_scores(client):
    """MLflow links to a LoggedModel only the metrics logged at its step: the Models tab can
    rank the model by its scores, and the run's own history holds each point once."""
    result = train(parse_config(TrainConfig, TINY))
    (output,) = client.get_run(result.run_id).outputs.model_outputs
    assert output.step == result.steps
    linked = {
        metric.key: metric.value for metric in client.get_logged_model(output.model_id).metrics
    }
    assert {"best_val_bits_per_seq", "bit_acc_L5", "bit_acc_L30"} <= set(linked)
    assert linked["best_val_bits_per_seq"] == pytest.approx(result.best_score)
    history = client.get_metric_history(result.run_id, "best_val_bits_per_seq")
    assert len(history) == 1, "linking the model logs no second point"
