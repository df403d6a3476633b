"""One trial: a config from the study's base and the sampled values, run as a nested train or
classify run with pruning and a heartbeat, tagged with its state, registered when it finishes."""

from __future__ import annotations

import copy
import os
import sys

import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from pipelines.common.config import ConfigError, configured, update
from pipelines.common.placement import placement_options
from pipelines.mnist.config import ClassifyConfig
from pipelines.mnist.fit import ClassifyResult, classify
from pipelines.search.config import MNIST, HpoConfig, seeded, value_name
from pipelines.search.heartbeat import JournalHeartbeat
from pipelines.search.pruning import TRIAL_STATE_TAG, OptunaPruning
from pipelines.search.seeded import run_seeds, trial_attrs
from pipelines.search.spaces import Fixed, Space
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import TrainResult, train
from pipelines.tracking.registry import CHAMPION, register
from pipelines.tracking.runs import TrackedRun
from pipelines.tracking.store import reachable, tracking_uri

SURPLUS_ATTR = "ntmlab_surplus"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def base_trial_config(config: HpoConfig, space: Space) -> TrainConfig | ClassifyConfig:
    """The config every trial starts from: the study's settings, then the space's fixed values,
    set by option name as if typed (the model's recipe fills the rest)."""
    study_settings = {
        "model": config.model,
        "seed": config.seed,
        "max_steps": config.trial_max_steps,
        "max_minutes": config.trial_max_minutes,
        "progress_bar": False,
        "experiment_name": config.experiment_name,
        **placement_options(config.placement),
    }
    fixed = {name: dist.value for name, dist in space.items() if isinstance(dist, Fixed)}
    if config.task == MNIST:
        # a trial's budget is its steps; validation every 200 of them feeds the pruner
        return configured(
            ClassifyConfig, {**study_settings, "epochs": 10**6, "val_every_n_steps": 200, **fixed}
        )
    base = configured(TrainConfig, {**study_settings, "task": config.task, **fixed})
    update(base, {"test_lengths": (base.data.max_len,)})  # trials are judged on validation
    return base


def first_validation_step(base) -> int:
    if isinstance(base, ClassifyConfig):
        return base.val_every_n_steps or 1
    return base.data.batches_per_epoch


def run_trial(trial_config, callbacks, tags) -> TrainResult | ClassifyResult:
    """Run one trial through its pipeline as a nested run; its result (run id, steps trained,
    metrics). All of its tracking goes through the run's outbox, its FAIL tag included."""
    failed = {TRIAL_STATE_TAG: "FAIL"}
    if isinstance(trial_config, ClassifyConfig):
        return classify(
            trial_config, tags=tags, nested=True, callbacks=callbacks, failure_tags=failed
        )
    return train(trial_config, callbacks=callbacks, nested=True, tags=tags, failure_tags=failed)


def check_space(base, space: Space) -> None:
    """Every bound and choice of the space must give a valid train config on its own."""
    for name, dist in space.items():
        for value in dist.extremes():
            probe = copy.deepcopy(base)
            try:
                update(probe, {name: value})
            except ConfigError as error:
                raise ConfigError(f"--space: {name}={value!r} is invalid: {error}") from None


class SurplusTrial(Exception):
    """Another worker already started the study's last trial; this one is not needed."""


def _counted_before(study: optuna.Study, number: int) -> int:
    live = (*FINISHED_STATES, TrialState.RUNNING, TrialState.WAITING)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and t.state in live)


def objective_for(
    config: HpoConfig, space: Space, base, parent: TrackedRun, session: dict, storage
):
    """The trial function (trial runs are the parent's children); ``session`` collects what
    this worker saw (surplus, trials not registered yet); on a journal ``storage`` it keeps the
    trial's heartbeat."""

    parent_run_id = parent.run_id

    def objective(trial: optuna.Trial) -> float:
        if _counted_before(trial.study, trial.number) >= config.n_trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            session["surplus"] = True
            raise SurplusTrial(f"trial {trial.number} is beyond n_trials={config.n_trials}")
        trial.set_user_attr("worker_pid", os.getpid())  # which process holds the trial
        values = {name: dist.suggest(trial, name) for name, dist in space.items()}
        trial_config = copy.deepcopy(base)
        update(trial_config, values)
        tags = {
            "optuna.study_name": config.study_name,
            "optuna.trial_number": str(trial.number),
        }
        if seeded(config):
            with JournalHeartbeat(storage, trial._trial_id, config.heartbeat_interval):
                results = run_seeds(config, trial_config, tags, run_trial)
            value, attrs = trial_attrs(results, config.trial_max_steps)
            for name, attr in attrs.items():
                trial.set_user_attr(name, attr)
            session.setdefault("unregistered", []).append((trial.number, attrs["run_id"], value))
            register_finished(config, session, parent_run_id)
            return value
        pruning = OptunaPruning(trial, config.metric, config.direction)
        with JournalHeartbeat(storage, trial._trial_id, config.heartbeat_interval):
            result = run_trial(trial_config, [pruning], tags)
        run_id = result.run_id
        trial.set_user_attr("run_id", run_id)
        trial.set_user_attr("steps", result.steps)
        if pruning.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {pruning.pruned_at}")
        if pruning.best is None:
            raise RuntimeError("the trial ended before its first validation")
        session.setdefault("unregistered", []).append((trial.number, run_id, pruning.best))
        register_finished(config, session, parent_run_id)
        return pruning.best

    return objective


def register_finished(config: HpoConfig, session: dict, parent: str) -> None:
    """Register this worker's finished trials not registered yet, if the store answers now: a
    trial that finished during an outage is registered at a later trial or the study's end."""
    pending = session.get("unregistered", [])
    while pending and reachable(tracking_uri()):
        number, run_id, value = pending[0]
        _register_trial(config, number, run_id, value, parent)
        pending.pop(0)


def _register_trial(config: HpoConfig, number: int, run_id: str, value: float, parent: str):
    """A new version of ``--register_as`` per finished trial; ``champion`` follows the best."""
    tags = {
        "optuna.study_name": config.study_name,
        "optuna.trial_number": str(number),
        "ntmlab.hpo_run_id": parent,
    }
    client = MlflowClient(tracking_uri())
    try:
        version = register(
            client, run_id, config.register_as, value_name(config), value, config.direction, tags
        )
    except MlflowException as error:  # the trial itself finished; say so, keep the study going
        print(f"hpo: could not register trial {number}'s model ({error})", file=sys.stderr)
        return
    champion = client.get_model_version_by_alias(config.register_as, CHAMPION)
    print(
        f"hpo: trial {number} is {config.register_as} version {version.version}; "
        f"{CHAMPION} is version {champion.version}"
    )


def trial_runs(client: MlflowClient, experiment_id: str, study_name: str, condition: str):
    """This study's trial runs in the parent's experiment that also meet ``condition``."""
    query = f"tags.`optuna.study_name` = '{study_name}' and {condition}"
    return client.search_runs([experiment_id], filter_string=query)
