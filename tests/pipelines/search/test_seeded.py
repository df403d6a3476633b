"""Multi-seed trials: the score, the trial-state tag, and tiny studies of two seeds a trial."""

from types import SimpleNamespace

import pytest

from pipelines.hpo import main
from pipelines.search.pruning import TagTrialState
from pipelines.search.seeded import SEED_TAG, seeds_score
from tests.pipelines.search.studies import hpo_args, load_study, study_runs


def test_the_score_ranks_seeds_reached_first_then_the_median_budget_fraction():
    assert seeds_score([50, 60], 100) == pytest.approx(0.55)
    assert seeds_score([10, None], 100) == pytest.approx(1.1)
    assert seeds_score([None, None], 100) == 3.0
    # every seed at the budget's end still beats one missed seed, however fast the other
    assert seeds_score([100, 100], 100) < seeds_score([1, None], 100) < seeds_score([None] * 2, 100)
    # the median, not the mean: one slow seed of three does not move it
    assert seeds_score([10, 20, 90], 100) == pytest.approx(0.2)


def test_a_seed_run_is_complete_once_it_validated_and_the_sanity_check_does_not_count():
    state = TagTrialState()
    state.on_validation_end(SimpleNamespace(sanity_checking=True), None)
    assert state.state == "FAIL"
    state.on_validation_end(SimpleNamespace(sanity_checking=False), None)
    assert state.state == "COMPLETE"


def test_a_two_seed_trial_is_two_runs_scored_on_the_threshold_and_resumes_only_alike(
    client, storage, capsys
):
    # every seed's first validation (step 10 of 20) is below this threshold
    args = hpo_args(storage, 1, "--seeds_per_trial", "2", "--threshold", "1e6", "--seed", "3")
    assert main(args) == 0
    (trial,) = load_study(storage).trials
    assert trial.value == pytest.approx(10 / 20)
    assert trial.user_attrs["seeds_reached"] == 2
    assert trial.user_attrs["reached_threshold_at"] == [10, 10]
    (parent,), runs = study_runs(client)
    assert sorted(run.data.tags[SEED_TAG] for run in runs) == ["3", "4"]
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.trial_state"] == "COMPLETE"
        assert run.data.metrics["steps_to_stop_at"] == 10  # where --stop_at saw the threshold
        assert run.data.params["resolved.seed"] == run.data.tags[SEED_TAG]
        assert float(run.data.params["trainer.stop_at"]) == 1e6  # each stopped at the threshold
    assert set(trial.user_attrs["seed_run_ids"]) == {run.info.run_id for run in runs}
    assert parent.data.metrics["best_success_rate"] == 1.0
    assert "| seeds reached |" in parent.data.tags["mlflow.note.content"]
    champion = client.get_model_version_by_alias("lstm-copy", "champion")
    assert champion.run_id == trial.user_attrs["run_id"]
    assert champion.tags["ntmlab.metric"] == "seeds_score"

    # a resume that would score differently is refused before it trains
    capsys.readouterr()
    assert main([*args[:-2], "--seed", "3", "--seeds_per_trial", "3"]) == 2
    assert "scores trials with --seeds_per_trial 2" in capsys.readouterr().err
    assert main([*hpo_args(storage, 1)]) == 2  # one seed per trial: not comparable either
    assert len(load_study(storage).trials) == 1


def test_a_trial_whose_seeds_all_miss_scores_worse_than_any_that_reaches(client, storage):
    args = hpo_args(storage, 1, "--seeds_per_trial", "2", "--threshold", "0")
    assert main([*args, "--trial_max_steps", "10"]) == 0
    (trial,) = load_study(storage).trials
    assert trial.value == 3.0
    assert trial.user_attrs["seeds_reached"] == 0
    assert trial.user_attrs["reached_threshold_at"] == [None, None]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pruner", "median"], "--pruner median: a multi-seed trial is not pruned"),
        (["--metric", "val_loss"], "--metric/--direction"),
        (["--task", "mnist", "--model", "mlp"], "multi-seed trials train sequence tasks"),
    ],
)
def test_multi_seed_trials_refuse_what_they_cannot_score(storage, capsys, extra, message):
    assert main([*hpo_args(storage, 1, "--seeds_per_trial", "2"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_threshold_without_multi_seed_trials_is_refused(storage, capsys):
    assert main(hpo_args(storage, 1, "--threshold", "0.1")) == 2
    assert "set --seeds_per_trial" in capsys.readouterr().err
