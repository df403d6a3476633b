"""What the hpo tests share: tiny trials, a temp study storage, and how to read a study back."""

import optuna
from optuna.trial import TrialState

from pipelines.search.storage import open_storage

# trials of seconds: a 1-layer LSTM on copy of lengths 1..3, 2 validations of 40 sequences
FIXED = "num_layers=1,hidden_size=16|32,batches_per_epoch=10,val_size=40,test_size=10,max_len=3"


def hpo_args(storage: str, n_trials: int, *extra: str, space: str = FIXED) -> list[str]:
    return [
        "--model",
        "lstm",
        "--storage",
        storage,
        "--n_trials",
        str(n_trials),
        "--trial_max_steps",
        "20",
        "--space",
        space,
        "--study_name",
        "s",
        *extra,
    ]


def load_study(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=open_storage(storage))


def finished_trials(study):
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def study_runs(client):
    experiment = client.get_experiment_by_name("hpo-copy")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("ntmlab.pipeline") == "hpo"]
    trials = [run for run in runs if run.data.tags.get("ntmlab.pipeline") == "train"]
    return parents, trials
