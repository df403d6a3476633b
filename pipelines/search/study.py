"""The hpo pipeline's loop: open the storage and the study, keep its parent run, run trials
until the study has ``--n_trials`` finished ones. What the command does: :mod:`pipelines.hpo`
(its ``--help``).
"""

from __future__ import annotations

import sys
import time
import warnings

import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from pipelines.common.config import RESOLVED_PREFIX, ConfigError, flatten_params
from pipelines.common.placement import placement_of
from pipelines.search.config import HpoConfig, schema_of, space_name
from pipelines.search.heartbeat import fail_stale_trials
from pipelines.search.objective import (
    FINISHED_STATES,
    base_trial_config,
    check_space,
    first_validation_step,
    objective_for,
    register_finished,
    trial_runs,
)
from pipelines.search.pruning import TRIAL_STATE_TAG
from pipelines.search.samplers import make_pruner, make_sampler
from pipelines.search.spaces import build_space
from pipelines.search.storage import open_storage, redacted
from pipelines.search.summary import log_summary
from pipelines.tracking.runs import tracked_run
from pipelines.tracking.store import reachable, tracking_uri, wait_until_reachable

PARENT_RUN_ATTR = "mlflow_parent_run_id"
SCORING_ATTR = "ntmlab_scoring"  # how the study's trials are scored (seeds, threshold)
WAIT_POLL_S = 2.0  # how often a worker with nothing to run looks at the others' trials


def _open_study(config: HpoConfig, storage, sampler, pruner) -> optuna.Study:
    """Create the study, or load it unchanged if it exists (then its direction must match)."""
    study = optuna.create_study(
        study_name=config.study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=config.direction,
        load_if_exists=True,
    )
    created_for = study.direction.name.lower()
    if created_for != config.direction:
        raise ConfigError(
            f"study {config.study_name!r} in {redacted(config.storage)} was created to "
            f"{created_for}, not {config.direction}; pick another --study_name or --direction"
        )
    _check_scoring(study, config)
    return study


def _check_scoring(study: optuna.Study, config: HpoConfig) -> None:
    """A study's trials are comparable only if every one was scored the same way: the seeds
    per trial and their threshold are kept in the study and must match on a resume (a study
    from before they were kept scored one seed per trial)."""
    wanted = {"seeds_per_trial": config.seeds_per_trial, "threshold": config.threshold}
    kept = study.user_attrs.get(SCORING_ATTR)
    if kept is None and study.get_trials(deepcopy=False):
        kept = {"seeds_per_trial": 1, "threshold": None}
    if kept is None:
        study.set_user_attr(SCORING_ATTR, wanted)
    elif kept != wanted:
        raise ConfigError(
            f"study {config.study_name!r} scores trials with --seeds_per_trial "
            f"{kept['seeds_per_trial']} and --threshold {kept['threshold']}, not "
            f"{config.seeds_per_trial} and {config.threshold}; pick another --study_name"
        )


def _parent_run_id(study: optuna.Study) -> str | None:
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if not run_id:
        return None
    try:
        MlflowClient(tracking_uri()).get_run(run_id)
    except MlflowException:
        return None  # the study outlived its tracking store; start a new parent
    return run_id


def hpo(config: HpoConfig) -> optuna.Study:
    """Validate everything, open (or continue) the study and its parent run, run trials."""
    # heartbeats, stale-trial failing and the matplotlib plots are marked experimental
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    placement_of(config.placement)  # a bad placement fails before the study is touched
    space = build_space(space_name(config), config.space, schema_of(config))
    base = base_trial_config(config, space)
    check_space(base, space)
    storage = open_storage(config.storage, config.heartbeat_interval, config.max_retry)
    sampler = make_sampler(config)
    pruner = make_pruner(config, first_validation_step(base))
    study = _open_study(config, storage, sampler, pruner)

    experiment = config.experiment_name or f"hpo-{config.task}"
    parent_id = _parent_run_id(study)
    tags = {"ntmlab.pipeline": "hpo", "optuna.study_name": config.study_name}
    # several workers may hold the study's parent run open at once (shared storage)
    with tracked_run(
        experiment, f"hpo-{config.study_name}", tags, resume_run_id=parent_id, shared=True
    ) as run:
        if parent_id is None:
            study.set_user_attr(PARENT_RUN_ATTR, run.run_id)
            params = flatten_params(config)
            params[RESOLVED_PREFIX + "storage"] = redacted(config.storage)
            params.update({f"space.{name}": dist.describe() for name, dist in space.items()})
            run.outbox.log_params({k: v for k, v in params.items() if v is not None})
        session: dict = {"surplus": False}
        objective = objective_for(config, space, base, run, session, storage)
        started = time.monotonic()
        deadline = None if config.timeout_minutes is None else 60 * config.timeout_minutes
        failures = 0
        try:
            while (finished := _finished(study)) < config.n_trials:
                # stale trials become FAIL (their parameters queued again), not finished
                fail_stale_trials(study, storage, config.heartbeat_interval, config.max_retry)
                _fail_orphaned_runs(study, run.experiment_id, config.study_name)
                if finished + _running(study) >= config.n_trials:
                    # other workers hold the remaining trials; one may still die and leave
                    # its trial to retry, so wait rather than leave
                    if deadline is not None and time.monotonic() - started >= deadline:
                        break
                    time.sleep(min(config.heartbeat_interval, WAIT_POLL_S))
                    continue
                # a trial's run cannot open without the store; once open, an outage stalls
                # nothing (its tracking goes through the run's outbox)
                wait_until_reachable(tracking_uri(), "the next trial")
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
                if session["surplus"]:
                    break
                failures = failures + 1 if _finished(study) == finished else 0
                if failures >= max(3, config.n_trials):
                    print(
                        f"hpo: stopping after {failures} failed trials in a row; see the "
                        "failed trial runs' error tags",
                        file=sys.stderr,
                    )
                    break
                if deadline is not None and time.monotonic() - started >= deadline:
                    break
        finally:
            register_finished(config, session, run.run_id)
            _say_unregistered(session)
            log_summary(run, study, config)
    return study


def _fail_orphaned_runs(study: optuna.Study, experiment_id: str, study_name: str) -> None:
    """Trial runs still RUNNING whose trial is FAIL lost their process: end them FAILED."""
    failed = {str(t.number) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    if not failed or not reachable(tracking_uri()):
        return  # housekeeping: the next pass of the loop tries again
    client = MlflowClient(tracking_uri())
    for orphan in trial_runs(client, experiment_id, study_name, "attributes.status = 'RUNNING'"):
        if orphan.data.tags.get("optuna.trial_number") in failed:
            client.set_tag(orphan.info.run_id, "error", "the worker died (no trial heartbeat)")
            client.set_tag(orphan.info.run_id, TRIAL_STATE_TAG, "FAIL")
            client.set_terminated(orphan.info.run_id, status="FAILED")


def _say_unregistered(session: dict) -> None:
    for number, run_id, _ in session.get("unregistered", []):
        print(
            f"hpo: trial {number} (run {run_id}) finished but is not registered: the tracking "
            "store did not answer at the end of the study",
            file=sys.stderr,
        )


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
