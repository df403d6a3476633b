"""The hpo pipeline's config: what to search, on which storage, and how trials are judged."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.common.config import ConfigError, check_registered_name, option
from pipelines.common.placement import PlacementConfig
from pipelines.mnist.config import CLASSIFIERS, ClassifyConfig
from pipelines.search.storage import default_storage
from pipelines.sequence.config import MODEL_NAMES, SEQUENCE_TASKS, TASK_THRESHOLDS, TrainConfig

METRIC_DIRECTIONS = {
    "val_bits_per_seq": "minimize",
    "val_loss": "minimize",
    "val_bit_acc": "maximize",
    "val_acc": "maximize",
}
MNIST = "mnist"


@dataclass
class HpoConfig:
    model: str = option(
        "ntm", "model to search", choices=tuple(dict.fromkeys((*MODEL_NAMES, *CLASSIFIERS)))
    )
    task: str = option("copy", "task to search on", choices=(*SEQUENCE_TASKS, MNIST))
    n_trials: int = option(20, "finished trials (COMPLETE + PRUNED) the study should reach", min=1)
    timeout_minutes: float | None = option(
        None,
        "stop this worker after this many minutes (empty: no limit)",
        min=0.0,
        exclusive_min=True,
    )
    study_name: str | None = option(None, "Optuna study (default: <model>-<task>)")
    storage: str | None = option(
        None,
        "Optuna storage: sqlite:///file (one worker; empty: <project>/optuna.db), "
        "journal:///file (workers on one machine), postgresql+psycopg://user:pw@host/db "
        "(workers on several machines)",
    )
    sampler: str = option("tpe", "Optuna sampler", choices=("tpe", "random"))
    sampler_seed: int = option(0, "seed of the sampler (each trial's draws are seeded by it)")
    pruner: str | None = option(
        None,
        "pruner (empty: median, or none with --seeds_per_trial above 1)",
        choices=(None, "median", "hyperband", "none"),
    )
    metric: str | None = option(
        None,
        "validation metric (empty: val_bits_per_seq, or val_acc for mnist)",
        choices=(None, *METRIC_DIRECTIONS),
    )
    direction: str | None = option(
        None,
        "minimize or maximize (empty: the metric's natural one)",
        choices=(None, "minimize", "maximize"),
    )
    space: str = option("", "narrow, restrict or fix parameters: name=low:high,name=a|b,name=v")
    trial_max_steps: int = option(2000, "training steps per trial (the per-trial budget)", min=1)
    trial_max_minutes: float = option(
        30.0, "wall-clock limit per trial", min=0.0, exclusive_min=True
    )
    seed: int = option(
        0, "seed of weights and data in every trial (trials differ only in their parameters)", min=0
    )
    seeds_per_trial: int = option(
        1,
        "seeds every trial trains (--seed, --seed + 1, ...); above 1 a trial's value is the "
        "number of seeds that missed --threshold plus the median fraction of "
        "--trial_max_steps the others took to reach it, so a search ranks reliability first, "
        "then speed, and cannot pick a lucky seed (sequence tasks, no pruner)",
        min=1,
    )
    threshold: float | None = option(
        None,
        "val_bits_per_seq a seed must reach with --seeds_per_trial above 1 (empty: the "
        "task's target, copy and associative_recall 0.1, repeat_copy 0.5)",
        min=0.0,
    )
    heartbeat_interval: int = option(
        60,
        "seconds between trial heartbeats (RDB and journal storages); a trial silent for "
        "twice this long is failed and retried",
        min=1,
    )
    max_retry: int = option(3, "retries of a trial whose worker died", min=0)
    experiment_name: str | None = option(None, "MLflow experiment (default: hpo-<task>)")
    register_as: str | None = option(
        None,
        "registered model the best trial's model goes to, alias champion (default: <model>-<task>)",
    )
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
        if self.pruner is None:
            self.pruner = "none" if self.seeds_per_trial > 1 else "median"
        if self.seeds_per_trial > 1 and self.threshold is None:
            self.threshold = TASK_THRESHOLDS.get(self.task)

    def check(self) -> None:
        check_registered_name(self.register_as, "--register_as")
        allowed = CLASSIFIERS if self.task == MNIST else MODEL_NAMES
        if self.model not in allowed:
            raise ConfigError(
                f"--model {self.model} does not train on {self.task}; choose one of: "
                f"{', '.join(allowed)}"
            )
        if self.seeds_per_trial == 1:
            if self.threshold is not None:
                raise ConfigError("--threshold scores multi-seed trials: set --seeds_per_trial")
            return
        needs = (
            (self.task != MNIST, f"--task {self.task}: multi-seed trials train sequence tasks"),
            (self.pruner == "none", f"--pruner {self.pruner}: a multi-seed trial is not pruned"),
            (
                (self.metric, self.direction) == ("val_bits_per_seq", "minimize"),
                "--metric/--direction: a multi-seed trial counts seeds that bring "
                "val_bits_per_seq down to --threshold",
            ),
        )
        for holds, error in needs:
            if not holds:
                raise ConfigError(f"{error} (--seeds_per_trial {self.seeds_per_trial})")


def seeded(config: HpoConfig) -> bool:
    """Whether a trial trains several seeds and is scored on how many reach the threshold."""
    return config.seeds_per_trial > 1


def value_name(config: HpoConfig) -> str:
    """What a trial's value is: the searched metric, or the multi-seed score."""
    return "seeds_score" if seeded(config) else config.metric


def schema_of(config: HpoConfig) -> type:
    """The config schema of the pipeline every trial runs."""
    return ClassifyConfig if config.task == MNIST else TrainConfig


def space_name(config: HpoConfig) -> str:
    return "mnist_lstm" if (config.task, config.model) == (MNIST, "lstm") else config.model
