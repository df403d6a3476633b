"""Hyperparameter search with Optuna: resumable studies, pruning, nested MLflow runs, workers.

    python -m pipelines.hpo --model ntm --task copy --n_trials 20 --study_name ntm-copy
    python -m pipelines.hpo ... --space "lr=1e-4:3e-3,controller=lstm|dense,max_len=10"

Running the same command again continues the study up to ``--n_trials`` finished trials
(COMPLETE or PRUNED). Several processes or machines may run it against one storage at once:
``journal:///path/file.log`` on one machine, ``postgresql+psycopg://...`` across machines
(SQLite is for one worker). With an RDB or a journal storage a trial whose process died is
failed by heartbeat and its parameters are retried (pipelines/trial_heartbeat.py).

The study is one parent MLflow run (its id is kept in the study, so a resume reopens it); each
trial is a nested train run tagged with its trial number and final state.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pipelines.classify import CLASSIFIERS, ClassifyConfig, classify
from pipelines.cli import run_pipeline
from pipelines.config import RESOLVED_PREFIX, ConfigError, flatten_params, option, update
from pipelines.pruning import OptunaPruning
from pipelines.scaling import PlacementConfig, copy_placement, placement_of
from pipelines.search_spaces import Fixed, Space, build_space
from pipelines.tracking.registry import CHAMPION, register
from pipelines.tracking.runs import TrackedRun, tracked_run
from pipelines.tracking.store import PROJECT_ROOT, tracking_uri
from pipelines.train import train
from pipelines.train_config import MODEL_NAMES, SEQUENCE_TASKS, TrainConfig, check_model_name
from pipelines.trial_heartbeat import JournalHeartbeat, fail_stale_trials

PARENT_RUN_ATTR = "mlflow_parent_run_id"
STORAGE_ENV = "NTMLAB_OPTUNA_STORAGE"  # the storage an empty --storage means
SURPLUS_ATTR = "ntmlab_surplus"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
METRIC_DIRECTIONS = {
    "val_bits_per_seq": "minimize",
    "val_loss": "minimize",
    "val_bit_acc": "maximize",
    "val_acc": "maximize",
}
MNIST = "mnist"
SCHEMA_ATTEMPTS = 3
WAIT_POLL_S = 2.0  # how often a worker with nothing to run looks at the others' trials


@dataclass
class HpoConfig:
    model: str = option(
        "ntm", "model to search", choices=tuple(dict.fromkeys((*MODEL_NAMES, *CLASSIFIERS)))
    )
    task: str = option("copy", "task to search on", choices=(*SEQUENCE_TASKS, MNIST))
    n_trials: int = option(20, "finished trials (COMPLETE + PRUNED) the study should reach", min=1)
    timeout_minutes: float | None = option(
        None, "stop this worker after this many minutes (empty: no limit)", min=0.0,
        exclusive_min=True,
    )  # fmt: skip
    study_name: str | None = option(None, "Optuna study (default: <model>-<task>)")
    storage: str | None = option(
        None,
        "Optuna storage: sqlite:///file (one worker; empty: <project>/optuna.db), "
        "journal:///file (workers on one machine), postgresql+psycopg://user:pw@host/db "
        "(workers on several machines)",
    )
    sampler: str = option("tpe", "Optuna sampler", choices=("tpe", "random"))
    sampler_seed: int = option(0, "seed of the sampler (each trial's draws are seeded by it)")
    pruner: str = option("median", "pruner", choices=("median", "hyperband", "none"))
    metric: str | None = option(
        None,
        "validation metric (empty: val_bits_per_seq, or val_acc for mnist)",
        choices=(None, *METRIC_DIRECTIONS),
    )
    direction: str | None = option(
        None, "minimize or maximize (empty: the metric's natural one)",
        choices=(None, "minimize", "maximize"),
    )  # fmt: skip
    space: str = option("", "narrow, restrict or fix parameters: name=low:high,name=a|b,name=v")
    trial_max_steps: int = option(2000, "training steps per trial (the per-trial budget)", min=1)
    trial_max_minutes: float = option(
        30.0, "wall-clock limit per trial", min=0.0, exclusive_min=True
    )
    seed: int = option(0, "seed of weights and data in every trial (trials differ only in "
                       "their parameters)", min=0)  # fmt: skip
    heartbeat_interval: int = option(
        60, "seconds between trial heartbeats (RDB and journal storages); a trial silent for "
        "twice this long is failed and retried", min=1,
    )  # fmt: skip
    max_retry: int = option(3, "retries of a trial whose worker died", min=0)
    experiment_name: str | None = option(None, "MLflow experiment (default: hpo-<task>)")
    register_as: str | None = option(
        None, "registered model the best trial's model goes to, alias champion (default: "
        "<model>-<task>)",
    )  # fmt: skip
    placement: PlacementConfig = field(default_factory=PlacementConfig)  # every trial's training

    def resolve(self) -> None:
        if self.metric is None:
            self.metric = "val_acc" if self.task == MNIST else "val_bits_per_seq"
        if self.direction is None:
            self.direction = METRIC_DIRECTIONS.get(self.metric)
        if self.study_name is None:
            self.study_name = f"{self.model}-{self.task}"
        if self.register_as is None:
            self.register_as = f"{self.model}-{self.task}"
        if self.storage is None:
            self.storage = default_storage()

    def check(self) -> None:
        check_model_name(self.register_as, "--register_as")
        allowed = CLASSIFIERS if self.task == MNIST else MODEL_NAMES
        if self.model not in allowed:
            raise ConfigError(
                f"--model {self.model} does not train on {self.task}; choose one of: "
                f"{', '.join(allowed)}"
            )


# ---------------------------------------------------------------- building blocks


def default_storage() -> str:
    """``$NTMLAB_OPTUNA_STORAGE``, else the project's ``sqlite:///<root>/optuna.db``."""
    return os.environ.get(STORAGE_ENV) or f"sqlite:///{PROJECT_ROOT / 'optuna.db'}"


def open_storage(url: str, heartbeat_interval: int = 60, max_retry: int = 3):
    """The storage object for ``url`` (``journal:///file`` or an RDB URL), with heartbeats and
    retries on an RDB; unreachable or malformed is a ConfigError."""
    if url.startswith("journal:///"):
        path = url[len("journal://") :]
        try:
            return JournalStorage(JournalFileBackend(path))
        except OSError as error:
            raise ConfigError(f"--storage: cannot open journal file {path} ({error})") from None
    last_error: Exception | None = None
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=2 * heartbeat_interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry),
                engine_kwargs={"pool_pre_ping": True},
            )
        except (ArgumentError, ValueError, ImportError) as error:
            last_error = error
            break
        except SQLAlchemyError as error:
            # workers starting together race to create the schema of a fresh database; the
            # loser sees "duplicate key" once and succeeds on the next try
            last_error = error
            if "duplicate" not in str(error) and "already exists" not in str(error):
                break
            time.sleep(0.5 * (attempt + 1))
    text = str(last_error).strip()
    reason = text.splitlines()[0] if text else type(last_error).__name__
    raise ConfigError(f"--storage: cannot open {redacted(url)} ({reason[:200]})")


def redacted(url: str) -> str:
    """The storage URL without its password, for logs and MLflow params."""
    if url.startswith("journal:///"):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def trial_seed(seed: int, number: int) -> int:
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class _TrialSeeded:
    """Reseeds a sampler's random draws from ``(seed, trial number)`` before every trial.

    A resumed study or a second worker therefore never replays the first trials' random
    (startup) parameters, and a single-worker study stays reproducible trial by trial.
    """

    def before_trial(self, study, trial) -> None:
        seed = trial_seed(self._base_seed, trial.number)
        self._rng.rng.seed(seed)
        inner = getattr(self, "_random_sampler", None)
        if inner is not None:
            inner._rng.rng.seed(seed + 1)
        super().before_trial(study, trial)


class TrialSeededTPE(_TrialSeeded, optuna.samplers.TPESampler):
    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self._base_seed = seed


class TrialSeededRandom(_TrialSeeded, optuna.samplers.RandomSampler):
    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self._base_seed = seed


def make_sampler(config: HpoConfig) -> optuna.samplers.BaseSampler:
    if config.sampler == "random":
        return TrialSeededRandom(config.sampler_seed)
    return TrialSeededTPE(config.sampler_seed)


def make_pruner(config: HpoConfig, first_validation: int) -> optuna.pruners.BasePruner:
    if config.pruner == "median":
        # skip the first validation: every trial looks alike before it has learned anything
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=first_validation)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=first_validation, max_resource=config.trial_max_steps
        )
    return optuna.pruners.NopPruner()


def schema_of(config: HpoConfig) -> type:
    """The config schema of the pipeline every trial runs."""
    return ClassifyConfig if config.task == MNIST else TrainConfig


def space_name(config: HpoConfig) -> str:
    return "mnist_lstm" if (config.task, config.model) == (MNIST, "lstm") else config.model


def base_trial_config(config: HpoConfig, space: Space):
    """The config every trial starts from: study settings plus the space's fixed values."""
    if config.task == MNIST:
        base = ClassifyConfig(
            model=config.model, seed=config.seed, progress_bar=False, epochs=10**6,
            max_steps=config.trial_max_steps, max_minutes=config.trial_max_minutes,
            val_every_n_steps=200, experiment_name=config.experiment_name,
            placement=copy.copy(config.placement),
        )  # fmt: skip
        base.resolve()
    else:
        base = TrainConfig()
        base.model.name, base.data.task, base.seed = config.model, config.task, config.seed
        base.trainer.max_steps = config.trial_max_steps
        base.trainer.max_minutes = config.trial_max_minutes
        base.trainer.progress_bar = False
        base.experiment_name = config.experiment_name
        copy_placement(config.placement, base.trainer)
        base.resolve()
        base.data.test_lengths = (base.data.max_len,)  # trials are judged on validation
    update(base, {name: d.value for name, d in space.items() if isinstance(d, Fixed)})
    return base


def first_validation_step(base) -> int:
    if isinstance(base, ClassifyConfig):
        return base.val_every_n_steps or 1
    return base.data.batches_per_epoch


def run_trial(trial_config, callbacks, tags) -> tuple[str, int]:
    """Run one trial through its pipeline as a nested run; ``(run id, steps trained)``."""
    if isinstance(trial_config, ClassifyConfig):
        result = classify(trial_config, tags=tags, nested=True, callbacks=callbacks)
    else:
        result = train(trial_config, callbacks=callbacks, nested=True, tags=tags)
    return result.run_id, result.steps


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


# ---------------------------------------------------------------- the study


def objective_for(
    config: HpoConfig, space: Space, base, parent: TrackedRun, session: dict, storage
):
    """The trial function (trial runs land in ``experiment_id``, the parent's); ``session``
    collects what this worker saw (surplus); on a journal ``storage`` it keeps the trial's
    heartbeat."""

    experiment_id, parent_run_id = parent.experiment_id, parent.run_id

    def objective(trial: optuna.Trial) -> float:
        if _counted_before(trial.study, trial.number) >= config.n_trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            session["surplus"] = True
            raise SurplusTrial(f"trial {trial.number} is beyond n_trials={config.n_trials}")
        trial.set_user_attr("worker_pid", os.getpid())  # which process holds the trial
        values = {name: dist.suggest(trial, name) for name, dist in space.items()}
        trial_config = copy.deepcopy(base)
        update(trial_config, values)
        pruning = OptunaPruning(trial, config.metric, config.direction)
        tags = {
            "optuna.study_name": config.study_name,
            "optuna.trial_number": str(trial.number),
        }
        try:
            with JournalHeartbeat(storage, trial._trial_id, config.heartbeat_interval):
                run_id, steps = run_trial(trial_config, [pruning], tags)
        except Exception:
            client = MlflowClient(tracking_uri())
            query = f"tags.`optuna.trial_number` = '{trial.number}'"
            for failed in _trial_runs(client, experiment_id, config.study_name, query):
                client.set_tag(failed.info.run_id, "optuna.trial_state", "FAIL")
            raise
        trial.set_user_attr("run_id", run_id)
        trial.set_user_attr("steps", steps)
        state = "PRUNED" if pruning.pruned_at is not None else "COMPLETE"
        MlflowClient(tracking_uri()).set_tag(run_id, "optuna.trial_state", state)
        if pruning.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {pruning.pruned_at}")
        if pruning.best is None:
            raise RuntimeError("the trial ended before its first validation")
        _register_trial(config, trial.number, run_id, pruning.best, parent_run_id)
        return pruning.best

    return objective


def _register_trial(config: HpoConfig, number: int, run_id: str, value: float, parent: str):
    """A new version of ``--register_as`` per finished trial; ``champion`` follows the best."""
    tags = {"optuna.study_name": config.study_name, "optuna.trial_number": str(number),
            "ntmlab.hpo_run_id": parent}  # fmt: skip
    client = MlflowClient(tracking_uri())
    try:
        version = register(
            client, run_id, config.register_as, config.metric, value, config.direction, tags
        )
    except MlflowException as error:  # the trial itself finished; say so, keep the study going
        print(f"hpo: could not register trial {number}'s model ({error})", file=sys.stderr)
        return
    champion = client.get_model_version_by_alias(config.register_as, CHAMPION)
    print(f"hpo: trial {number} is {config.register_as} version {version.version}; "
          f"{CHAMPION} is version {champion.version}")  # fmt: skip


def _trial_runs(client: MlflowClient, experiment_id: str, study_name: str, condition: str):
    """This study's trial runs in the parent's experiment that also meet ``condition``."""
    query = f"tags.`optuna.study_name` = '{study_name}' and {condition}"
    return client.search_runs([experiment_id], filter_string=query)


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
    return study


def _parent_run_id(study: optuna.Study) -> str | None:
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if not run_id:
        return None
    try:
        MlflowClient(tracking_uri()).get_run(run_id)
    except MlflowException:
        return None  # the study outlived its tracking store; start a new parent
    return run_id


def _log_summary(run: TrackedRun, study: optuna.Study, config: HpoConfig) -> None:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.name.lower()] += 1
    outbox = run.outbox
    metrics = {f"trials_{name}": count for name, count in counts.items() if count}
    metrics["total_train_steps"] = sum(t.user_attrs.get("steps", 0) for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        metrics["best_value"] = study.best_trial.value
    outbox.log_metrics(metrics, step=0)
    run.describe(trials_markdown(study, config))
    if not complete:
        return
    best = study.best_trial
    outbox.set_tags(
        {
            "best_trial_number": str(best.number),
            "best_trial_run_id": best.user_attrs.get("run_id", ""),
            **{f"best.{name}": str(value) for name, value in best.params.items()},
        }
    )
    outbox.log_text(json.dumps({"value": best.value, "params": best.params}, indent=2),
                    "optuna/best_trial.json")  # fmt: skip
    _log_plots(outbox, study)


def trials_markdown(study: optuna.Study, config: HpoConfig) -> str:
    """The parent run's description: the study's trials, best first."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    reverse = config.direction == "maximize"
    ordered = sorted(finished, key=lambda t: t.value, reverse=reverse)
    ordered += [t for t in trials if t.state != TrialState.COMPLETE]
    names = list(dict.fromkeys(name for t in trials for name in t.params))
    lines = [
        f"Study `{config.study_name}`: {len(finished)} complete of {len(trials)} trials, "
        f"{config.metric} ({config.direction}); the best model is "
        f"`models:/{config.register_as}@{CHAMPION}`.",
        "",
        "| trial | state | " + config.metric + " | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for trial in ordered:
        value = "" if trial.value is None else f"{trial.value:.4g}"
        cells = [_short(trial.params.get(name, "")) for name in names]
        lines.append(
            f"| {trial.number} | {trial.state.name} | {value} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _log_plots(outbox, study: optuna.Study) -> None:
    from optuna.visualization import matplotlib as plots

    for name, draw in (
        ("optimization_history", plots.plot_optimization_history),
        ("param_importances", plots.plot_param_importances),
        ("parallel_coordinate", plots.plot_parallel_coordinate),
        ("intermediate_values", plots.plot_intermediate_values),
    ):
        try:
            axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # too few trials
            print(f"hpo: skipped the {name} plot ({error})", file=sys.stderr)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        try:
            outbox.log_figure(figure, f"optuna/{name}.png")
        finally:
            plt.close(figure)


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
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
                if session["surplus"]:
                    break
                failures = failures + 1 if _finished(study) == finished else 0
                if failures >= max(3, config.n_trials):
                    print(f"hpo: stopping after {failures} failed trials in a row; see the "
                          "failed trial runs' error tags", file=sys.stderr)  # fmt: skip
                    break
                if deadline is not None and time.monotonic() - started >= deadline:
                    break
        finally:
            _log_summary(run, study, config)
    return study


def _fail_orphaned_runs(study: optuna.Study, experiment_id: str, study_name: str) -> None:
    """Trial runs still RUNNING whose trial is FAIL lost their process: end them FAILED."""
    failed = {str(t.number) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    if not failed:
        return
    client = MlflowClient(tracking_uri())
    for orphan in _trial_runs(client, experiment_id, study_name, "attributes.status = 'RUNNING'"):
        if orphan.data.tags.get("optuna.trial_number") in failed:
            client.set_tag(orphan.info.run_id, "error", "the worker died (no trial heartbeat)")
            client.set_tag(orphan.info.run_id, "optuna.trial_state", "FAIL")
            client.set_terminated(orphan.info.run_id, status="FAILED")


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("hpo", HpoConfig, hpo, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
