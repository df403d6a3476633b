"""The hpo pipeline: studies of tiny LSTM trials against temp Optuna and MLflow stores."""

import optuna
import pytest
from optuna.trial import TrialState

from pipelines.common.config import parse_config
from pipelines.evaluate import main as evaluate_main
from pipelines.hpo import main
from pipelines.search.config import HpoConfig, schema_of, space_name
from pipelines.search.objective import base_trial_config
from pipelines.search.spaces import build_space
from pipelines.search.study import PARENT_RUN_ATTR
from tests.pipelines.search.studies import finished_trials, hpo_args, load_study, study_runs


def test_a_tiny_study_has_a_parent_run_one_nested_run_per_trial_and_the_best_link(client, storage):
    assert main(hpo_args(storage, 3)) == 0
    study = load_study(storage)
    assert len(finished_trials(study)) == 3
    (parent,), trials = study_runs(client)
    assert parent.info.status == "FINISHED"
    assert study.user_attrs[PARENT_RUN_ATTR] == parent.info.run_id
    assert len(trials) == 3
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.trial_state"] == "COMPLETE"
        number = int(run.data.tags["optuna.trial_number"])
        assert study.trials[number].user_attrs["run_id"] == run.info.run_id
        assert float(run.data.params["optim.lr"]) == pytest.approx(
            study.trials[number].params["lr"]
        )
    best = study.best_trial
    assert parent.data.tags["best_trial_run_id"] == best.user_attrs["run_id"]
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.params["resolved.storage"] == storage
    assert parent.data.params["space.hidden_size"] == "16 | 32"
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/best_trial.json"} <= files
    assert parent.data.tags["mlflow.note.content"].startswith("Study `s`: 3 complete of 3")
    # every finished trial is a version of lstm-copy; champion is the best trial's model
    versions = client.search_model_versions("name = 'lstm-copy'")
    assert sorted(v.tags["optuna.trial_number"] for v in versions) == ["0", "1", "2"]
    champion = client.get_model_version_by_alias("lstm-copy", "champion")
    assert champion.run_id == best.user_attrs["run_id"]
    assert champion.tags["optuna.trial_number"] == str(best.number)
    assert float(champion.tags["ntmlab.metric_value"]) == pytest.approx(best.value)
    # ... and evaluate scores the champion as its train run scored it
    best_run = client.get_run(best.user_attrs["run_id"])
    (scored,) = [key for key in best_run.data.metrics if key.startswith("bit_acc_L")]
    assert (
        evaluate_main(
            [
                "--models",
                "models:/lstm-copy@champion",
                "--lengths",
                scored.removeprefix("bit_acc_L"),
                "--test_size",
                "10",
            ]
        )
        == 0
    )
    (evaluation,) = client.search_runs(
        [parent.info.experiment_id], filter_string="tags.`ntmlab.pipeline` = 'evaluate'"
    )
    assert evaluation.data.metrics[scored] == pytest.approx(best_run.data.metrics[scored])


def test_a_clearly_worse_trial_is_pruned(client, storage):
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    for _ in range(4):  # the median pruner's startup trials learn with a good learning rate
        study.enqueue_trial({"lr": 1e-2, "hidden_size": 32})
    study.enqueue_trial({"lr": 1e-7, "hidden_size": 32})  # learns nothing in 20 steps
    assert main(hpo_args(storage, 5, "--trial_max_steps", "40")) == 0
    trials = load_study(storage).trials
    assert [t.state for t in trials[:4]] == [TrialState.COMPLETE] * 4
    assert trials[4].state == TrialState.PRUNED
    assert trials[4].user_attrs["steps"] < 40, "the pruned trial stopped early"
    _, runs = study_runs(client)
    states = {r.data.tags["optuna.trial_number"]: r.data.tags["optuna.trial_state"] for r in runs}
    assert states["4"] == "PRUNED"


def test_rerunning_the_command_resumes_the_study_without_replaying_parameters(client, storage):
    assert main(hpo_args(storage, 2)) == 0
    assert main(hpo_args(storage, 4)) == 0
    trials = load_study(storage).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    first, later = [t.params["lr"] for t in trials[:2]], [t.params["lr"] for t in trials[2:]]
    assert not set(first) & set(later), "the resumed sampler drew new parameters"
    parents, runs = study_runs(client)
    assert len(parents) == 1 and len(runs) == 4, "one parent run, reopened by the resume"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--space", "nonsense=1"], "'nonsense' is not an option of the trial pipeline"),
        (["--space", "lr=1e-2:1e-4"], "lr=1e-2:1e-4 is an empty range"),
        (["--space", "lr=abc"], "expected a number"),
        (["--space", "hidden_size=0|16"], "hidden_size=0 is invalid: --hidden_size: must be >= 1"),
    ],
)
def test_bad_search_spaces_exit_2_and_write_nothing(storage, capsys, extra, message):
    assert main([*hpo_args(storage, 1), *extra]) == 2
    assert message in capsys.readouterr().err
    assert optuna.study.get_all_study_names(storage) == []


def test_unreachable_storage_and_direction_mismatch_exit_2(client, storage, capsys):
    dead = "postgresql+psycopg://user:secret@127.0.0.1:1/optuna"
    assert main(hpo_args(dead, 1)) == 2
    err = capsys.readouterr().err
    assert "--storage: cannot open postgresql+psycopg://user:***@127.0.0.1:1/optuna" in err
    assert "secret" not in err

    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    assert main(hpo_args(storage, 1)) == 2
    assert "was created to maximize, not minimize" in capsys.readouterr().err
    assert load_study(storage).trials == []


def test_the_unfolded_lstm_is_searched_on_mnist_maximizing_val_acc(client, storage, mnist_dir):
    space = (
        f"depth=2|3,hidden_size=8,train_subset=128,batch_size=32,val_every_n_steps=2,"
        f"data_dir={mnist_dir}"
    )
    args = [
        "--model",
        "unfolded_lstm",
        "--task",
        "mnist",
        "--storage",
        storage,
        "--n_trials",
        "2",
        "--trial_max_steps",
        "4",
        "--space",
        space,
        "--study_name",
        "s",
    ]
    assert main(args) == 0
    study = load_study(storage)
    assert study.direction.name == "MAXIMIZE" and len(finished_trials(study)) == 2
    assert {"depth", "dropout", "tied", "lr"} <= set(study.trials[0].params)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("hpo-mnist").experiment_id],
        filter_string="tags.`ntmlab.pipeline` = 'hpo'",
    )
    assert parent.data.params["resolved.metric"] == "val_acc"
    assert 0.0 <= parent.data.metrics["best_value"] <= 1.0
    champion = client.get_model_version_by_alias("unfolded_lstm-mnist", "champion")
    assert champion.run_id == study.best_trial.user_attrs["run_id"], "maximized, not minimized"
    assert main(["--model", "ntm", "--task", "mnist", "--storage", storage]) == 2


def test_a_trial_that_crashes_is_fail_and_its_run_is_labelled(client, storage, monkeypatch):
    """The crash comes after training ended (where the trial's state was tagged COMPLETE):
    the run's FAIL tag, set through its outbox as it ends, is what stays."""
    import pipelines.sequence.fit as train_module

    def crash(*args, **kwargs):
        raise FloatingPointError("the model could not be logged")

    monkeypatch.setattr(train_module, "_log_model", crash)
    assert main(hpo_args(storage, 1)) == 0  # the study survives; it stops after 3 failures in a row
    trials = load_study(storage).trials
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)
    _, runs = study_runs(client)
    assert len(runs) == 3
    assert all(
        r.info.status == "FAILED" and r.data.tags["optuna.trial_state"] == "FAIL" for r in runs
    )


def test_every_trial_trains_where_the_study_is_placed(storage):
    config = parse_config(
        HpoConfig,
        [
            "--model",
            "lstm",
            "--storage",
            storage,
            "--devices",
            "2",
            "--strategy",
            "ddp",
            "--accelerator",
            "cpu",
        ],
    )
    space = build_space(space_name(config), config.space, schema_of(config))
    trainer = base_trial_config(config, space).trainer
    assert (trainer.accelerator, trainer.devices, trainer.strategy) == ("cpu", "2", "ddp")
