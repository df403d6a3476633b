"""The seeds pipeline's library: a study of one training recipe over many seeds, as one
parent run with one ``train`` run per seed, resumable by re-running the same command. What
the command does and logs: :mod:`pipelines.seeds` (its ``--help``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.common.config import ConfigError, config_argv, flatten_params, option, to_dict
from pipelines.common.interrupts import interrupt_guard
from pipelines.sequence.build import make_task
from pipelines.sequence.config import TASK_THRESHOLDS, TrainConfig
from pipelines.studies.seed_summary import (
    SUMMARY_CSV,
    SUMMARY_FIGURE,
    SUMMARY_MD,
    seed_row,
    seeds_figure,
    summary_csv,
    summary_markdown,
    summary_metrics,
)
from pipelines.tracking.runs import PARENT_RUN_ENV, RUN_ID_ENV, tracked_run
from pipelines.tracking.store import DEFAULT_EXPERIMENT_ID, tracking_uri

STUDY_TAG = "ntmlab.seeds_study"  # the parent's identity: a hash of what decides the trainings
# params never change, so the threshold the latest scoring used (a re-run may rescore at
# another) is a tag
THRESHOLD_TAG = "ntmlab.seeds_threshold"
SEED_PARAM = "resolved.seed"
STOP_GRACE_S = 60.0  # how long a stopped seed may take to checkpoint and end its run KILLED


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0-9``, ``0,3,7`` or ``0-4,10`` -> the seeds in order, each once."""
    seeds: list[int] = []
    for part in (piece.strip() for piece in text.split(",")):
        low, dash, high = part.partition("-")
        try:
            span = range(int(low), int(high) + 1) if dash else range(int(low), int(low) + 1)
        except ValueError:
            raise ConfigError(f"--seeds: {part!r} is not a seed or a range like 0-9") from None
        if not span or span.start < 0:
            raise ConfigError(f"--seeds: {part!r} is an empty or negative range")
        seeds += [seed for seed in span if seed not in seeds]
    return tuple(seeds)


@dataclass
class SeedsConfig:
    seeds: str = option("0-9", "seeds to train: a range 0-9, a list 0,3,7, or both: 0-4,10")
    threshold: float | None = option(
        None,
        "val_bits_per_seq a seed must reach to count (empty: the task's target, copy and "
        "associative_recall 0.1, repeat_copy 0.5)",
        min=0.0,
    )
    train_past: bool = option(
        False,
        "train every seed its whole budget instead of stopping it at the threshold, so the "
        "study measures both how soon a seed gets there and where it ends",
    )
    episodes: int | None = option(
        None,
        "training sequences per seed (sets --max_steps to episodes / batch size; empty: "
        "--max_steps decides)",
        min=1,
    )
    workers: int = option(
        1, "seeds trained at once, each in its own process with cores / workers threads", min=1
    )
    train: TrainConfig = field(default_factory=TrainConfig)  # every seed's train options

    def resolve(self) -> None:
        self.train.resolve()
        if self.threshold is None:
            self.threshold = TASK_THRESHOLDS.get(self.train.data.task)
        if self.episodes is not None and self.train.data.batch_size:
            self.train.trainer.max_steps = -(-self.episodes // self.train.data.batch_size)

    def check(self) -> None:
        parse_seeds(self.seeds)
        self.train.check()
        train = self.train
        for name, value in (
            ("--resume_run_id", train.resume_run_id),
            ("--register_as", train.register_as),
            ("--stop_at", train.trainer.stop_at),
        ):
            if value is not None:
                hint = "--threshold and --train_past" if name == "--stop_at" else "train"
                raise ConfigError(f"{name}: a seed study sets it itself (see {hint})")
        if train.seed != 0:
            raise ConfigError("--seed: a seed study trains --seeds (e.g. --seeds 0-9)")


def study_key(config: SeedsConfig) -> str:
    """What decides every seed's training: the train config (seed aside), the threshold when
    it stops the trainings, and whether they train past it. The same command, the same key."""
    decisive = {"train": to_dict(config.train), "train_past": config.train_past}
    if not config.train_past:
        decisive["threshold"] = config.threshold
    decisive["train"].pop("seed")
    decisive["train"].pop("experiment_name")
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def experiment_of(config: SeedsConfig) -> str:
    return config.train.experiment_name or f"seeds-{config.train.data.task}"


def find_study(client: MlflowClient, experiment: str, key: str) -> str | None:
    """The parent run of an earlier study with this key (the newest), or None. Under
    ``mlflow run --experiment-name`` the study lives in that run's experiment."""
    inherited = os.environ.get(RUN_ID_ENV)
    experiment_id = client.get_run(inherited).info.experiment_id if inherited else None
    if experiment_id in (None, DEFAULT_EXPERIMENT_ID):  # the study's own experiment
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return None
        experiment_id = found.experiment_id
    runs = client.search_runs(
        [experiment_id],
        f"tags.{STUDY_TAG} = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def children_by_seed(client: MlflowClient, parent_id: str) -> dict[int, Run]:
    """The study's train runs by seed, a later run of a seed winning (one whose params never
    reached the store, killed at its start, is left out: its seed runs again)."""
    experiment_id = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )
    return {int(run.data.params[SEED_PARAM]): run for run in runs if SEED_PARAM in run.data.params}


def seed_config(config: SeedsConfig, seed: int) -> TrainConfig:
    """One seed's train config: the study's, with its seed, experiment and stop."""
    child = copy.deepcopy(config.train)
    child.seed = seed
    child.experiment_name = experiment_of(config)
    child.trainer.stop_at = None if config.train_past else config.threshold
    return child


def seed_commands(
    config: SeedsConfig, seeds: Sequence[int], children: dict[int, Run]
) -> tuple[dict[int, list[str]], dict[str, list[int]]]:
    """The command of every seed that still has to train, and which seeds are kept (finished
    or failed), resumed (killed, or left RUNNING by a machine that went down) or new."""
    train = [sys.executable, "-m", "pipelines.train"]
    commands: dict[int, list[str]] = {}
    plan: dict[str, list[int]] = {"kept": [], "resumed": [], "new": []}
    for seed in seeds:
        run = children.get(seed)
        status = run.info.status if run is not None else None
        if status in ("FINISHED", "FAILED"):
            plan["kept"].append(seed)
        elif run is not None:
            commands[seed] = [*train, "--resume_run_id", run.info.run_id]
            plan["resumed"].append(seed)
        else:
            commands[seed] = [*train, *config_argv(seed_config(config, seed))]
            plan["new"].append(seed)
    return commands, plan


def worker_env(parent_id: str, workers: int) -> dict[str, str]:
    """A seed's environment: its parent, this store, and its share of the cores."""
    env = dict(os.environ)
    env.pop(RUN_ID_ENV, None)  # `mlflow run`'s run is the parent's, not a seed's
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env.update(
        {
            PARENT_RUN_ENV: parent_id,
            "MLFLOW_TRACKING_URI": tracking_uri(),
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
    )
    return env


def run_commands(commands: list[list[str]], workers: int, env: dict[str, str]) -> None:
    """Run ``commands`` at most ``workers`` at once. A seed that fails is its run's FAILED
    status, not the study's; a signal to the study stops every running seed (each saves a
    checkpoint and ends KILLED) before it propagates."""
    pending, running = list(commands), []
    try:
        while pending or running:
            while pending and len(running) < workers:
                running.append(subprocess.Popen(pending.pop(0), env=env))
            time.sleep(0.2)
            running = [process for process in running if process.poll() is None]
    except BaseException:
        _stop(running)
        raise


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def seeds_study(config: SeedsConfig) -> str:
    """Train every seed not yet trained, then score the study in its parent run; its id."""
    seeds = parse_seeds(config.seeds)
    task = make_task(config.train.data)
    experiment, key = experiment_of(config), study_key(config)
    client = MlflowClient(tracking_uri())
    earlier = find_study(client, experiment, key)
    tags = {"ntmlab.pipeline": "seeds", STUDY_TAG: key}
    name = f"seeds-{config.train.data.task}"
    with interrupt_guard(), tracked_run(experiment, name, tags, resume_run_id=earlier) as parent:
        outbox = parent.outbox
        if earlier is None:
            outbox.log_params({k: v for k, v in flatten_params(config).items() if v is not None})
        outbox.flush(force=True)
        commands, plan = seed_commands(config, seeds, children_by_seed(client, parent.run_id))
        print(
            "seeds: " + "; ".join(f"{how} {list(which)}" for how, which in plan.items() if which),
            flush=True,
        )
        run_commands(
            list(commands.values()), config.workers, worker_env(parent.run_id, config.workers)
        )
        children = children_by_seed(client, parent.run_id)
        labels = [task.label(length) for length in config.train.data.test_lengths]
        rows = [
            seed_row(client, seed, children.get(seed), config.threshold, labels) for seed in seeds
        ]
        outbox.set_tags({THRESHOLD_TAG: str(config.threshold)})
        outbox.log_metrics(summary_metrics(rows, labels), step=0)
        outbox.log_text(summary_csv(rows, labels), SUMMARY_CSV)
        table = summary_markdown(rows, labels, config.threshold)
        outbox.log_text(table, SUMMARY_MD)
        outbox.log_figure(seeds_figure(client, rows, labels, config.threshold), SUMMARY_FIGURE)
        parent.report("seeds", table)
    return parent.run_id
