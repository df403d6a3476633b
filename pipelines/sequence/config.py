"""The train pipeline's config schema: the one place its parameters and their bounds live."""

from __future__ import annotations

from dataclasses import dataclass, field

from datamodules.tasks import TASKS, SyntheticTask
from pipelines.common.config import ConfigError, check_registered_name, option
from pipelines.sequence.recipes import (
    COMPILE_FROM_MINUTES,
    COMPILE_FROM_STEPS,
    NTM_TASK_RECIPES,
    RECIPE_BATCH_SIZE,
    RECIPE_CLIP,
    RECIPE_LR,
    RECIPE_LR_DECAY_FLOOR,
    RECIPE_LR_DECAY_PATIENCE,
)

MODEL_NAMES = ("ntm", "lstm")
SEQUENCE_TASKS = tuple(TASKS)
TASK_NAMES = SEQUENCE_TASKS
REPEAT_COPY = ("repeat_copy",)
# bits/seq a seed must reach to count as learned: the targets of Graves et al.'s figures, as
# the results page uses them (seed studies and hpo's multi-seed trials)
TASK_THRESHOLDS = {"copy": 0.1, "associative_recall": 0.1, "repeat_copy": 0.5}


NTM = ("ntm",)
# sequences of the long validation set (copy: 200 of lengths 21-39 cost about half of the
# default validation set's 1,000 of 1-20); never more than the validation set itself, so a
# small --val_size keeps validations cheap
LONG_VAL_SIZE = 200


@dataclass
class ModelConfig:
    name: str = option("ntm", "model to train", cli="model", choices=MODEL_NAMES)
    hidden_size: int = option(256, "LSTM units per layer", min=1, models=("lstm",))
    num_layers: int = option(3, "stacked LSTM layers", min=1, models=("lstm",))
    forget_bias: float | None = option(
        1.0,
        "LSTM forget-gate bias at the start (the recipe 1; empty: PyTorch's init)",
        models=("lstm",),
    )
    memory_slots: int = option(128, "NTM memory rows N", min=1, models=NTM)
    memory_width: int = option(20, "NTM memory row width M", min=1, models=NTM)
    read_heads: int | None = option(
        None, "NTM read heads (empty: the task's recipe)", min=1, models=NTM
    )
    write_heads: int | None = option(
        None, "NTM write heads (empty: the task's recipe)", min=1, models=NTM
    )
    controller: str | None = option(
        None,
        "NTM controller (dense: no state of its own, so it must use the memory; empty: the "
        "task's recipe)",
        choices=("lstm", "dense", "double_dense"),
        models=NTM,
    )
    controller_size: int | None = option(
        None, "NTM controller units (empty: the task's recipe)", min=1, models=NTM
    )
    shift_range: int = option(1, "NTM shifts -r..r of location addressing", min=0, models=NTM)
    memory_init: str | None = option(
        None,
        "NTM starting memory (empty: the task's recipe; constant, associative_recall random)",
        choices=("constant", "learned", "random"),
        models=NTM,
    )
    location_first_init: bool | None = option(
        None,
        "start heads following/sharpening their last weighting (see heads.py; empty: the "
        "task's recipe)",
        models=NTM,
    )
    beta_init: float | None = option(
        None,
        "NTM key strength beta every head starts at (0: Linear's bias init, beta ~ 0.7; "
        "empty: the task's recipe)",
        min=0.0,
        models=NTM,
    )
    controller_clip: float = option(
        20.0, "bound on the NTM controller's outputs", min=0.0, exclusive_min=True, models=NTM
    )

    def memory_too_small(self, task: SyntheticTask, length: int) -> bool:
        """True when this is an NTM whose memory cannot hold one episode of ``length``."""
        return self.name == "ntm" and task.slots_needed(length) > self.memory_slots


@dataclass
class DataConfig:
    task: str = option("copy", "task to train on", cli="task", choices=TASK_NAMES)
    bits: int | None = option(
        None, "width of each bit vector (empty: the task's, 8; associative_recall 6)", min=1
    )
    min_len: int | None = option(
        None,
        "shortest training sequence, or fewest items for associative_recall (empty: the "
        "task's, copy 1..20, repeat_copy 1..10, associative_recall 2..6)",
        min=1,
    )
    max_len: int | None = option(
        None, "longest training sequence, or most items (empty: the task's)", min=1
    )
    min_repeats: int = option(1, "fewest repeats in training", min=1, tasks=REPEAT_COPY)
    max_repeats: int = option(10, "most repeats in training", min=1, tasks=REPEAT_COPY)
    batch_size: int | None = option(
        None, "sequences per training batch (empty: the NTM's task recipe, other models 64)", min=1
    )
    batches_per_epoch: int = option(200, "training batches between validations", min=1)
    val_size: int = option(1000, "sequences in the fixed validation set", min=1)
    eval_batch_size: int = option(500, "sequences per validation/test batch", min=1)
    test_lengths: tuple[int, ...] = option(
        (),
        "comma-separated lengths (items) evaluated after training (empty: the task's, copy "
        "20,40,80,120, repeat_copy 10,20, associative_recall 6,12)",
        min=1,
    )
    test_size: int = option(1000, "sequences per test length", min=1)
    long_val_size: int | None = option(
        None,
        "sequences in the long validation set (longer than any trained on), which chooses the "
        f"best checkpoint with the validation set (empty: {LONG_VAL_SIZE}, or --val_size if "
        "smaller; 0: the validation set alone)",
        min=0,
    )
    long_val_max_len: int | None = option(
        None,
        "longest length (most items) of the long validation set, whose lengths run from "
        "max_len + 1 to this, test lengths left out (empty: twice max_len)",
        min=1,
    )
    curriculum_steps_per_length: int | None = option(
        None,
        "length curriculum: each start trains on min_len..min_len+1 first and widens the "
        "range by one length (item) every this many steps (0: the whole range from the first "
        "step; empty: the NTM's task recipe, associative_recall 150, other tasks and models 0)",
        min=0,
    )


def task_options(data: DataConfig) -> dict[str, int]:
    """The constructor options of ``data.task`` (repeat counts only for repeat copy)."""
    options = {"bits": data.bits, "min_len": data.min_len, "max_len": data.max_len}
    if data.task in REPEAT_COPY:
        options.update(min_repeats=data.min_repeats, max_repeats=data.max_repeats)
    return options


def long_val_lengths(data: DataConfig) -> tuple[int, ...]:
    """The long validation set's lengths: beyond training, and never a test length, so no
    choice made on it has seen a test set's length."""
    if not data.long_val_size:
        return ()
    longest = data.long_val_max_len or 2 * data.max_len
    excluded = set(data.test_lengths)
    return tuple(n for n in range(data.max_len + 1, longest + 1) if n not in excluded)


@dataclass
class OptimConfig:
    optimizer: str = option("adam", "optimizer", choices=("adam", "rmsprop"))
    lr: float | None = option(
        None,
        "learning rate (empty: the model's recipe, see RECIPE_LR)",
        min=0.0,
        exclusive_min=True,
    )
    adam_eps: float = option(1e-8, "Adam's denominator floor", min=0.0, exclusive_min=True)
    lr_decay_patience: int | None = option(
        None,
        "halve the lr once more than this many validations bring no new best (0: never; "
        "empty: the NTM's task recipe, other models RECIPE_LR_DECAY_PATIENCE)",
        min=0,
    )
    lr_decay_floor: float | None = option(
        None,
        "the plateau decay stops at this fraction of the starting lr (0: no floor; empty: "
        "RECIPE_LR_DECAY_FLOOR)",
        min=0.0,
        max=1.0,
    )
    momentum: float = option(0.9, "RMSprop momentum", min=0.0, max=1.0)
    rmsprop_alpha: float = option(0.95, "RMSprop smoothing constant", min=0.0, max=1.0)
    clip_algorithm: str = option("norm", "gradient clipping", choices=("norm", "value", "none"))
    clip_value: float | None = option(
        None,
        "clipping threshold (empty: the model's recipe, see RECIPE_CLIP)",
        min=0.0,
        exclusive_min=True,
    )


@dataclass
class TrainerConfig:
    max_steps: int = option(10_000, "stop after this many optimizer steps", min=1)
    max_minutes: float = option(60.0, "stop after this many minutes", min=0.0, exclusive_min=True)
    stop_at: float | None = option(
        None, "stop once val_bits_per_seq <= this (empty: train the whole budget)", min=0.0
    )
    log_every_n_steps: int = option(25, "log training metrics every n steps", min=1)
    plot_every_n_val: int = option(5, "log a figure every n validations (and at the end)", min=1)
    progress_bar: bool = option(True, "show Lightning's progress bar (off for logs and CI)")
    accelerator: str = option("auto", "Lightning accelerator (cpu, gpu, auto, ...)")
    devices: str = option("auto", "Lightning devices (auto, a count, or a list like 0,1)")
    num_nodes: int = option(1, "nodes for multi-node training", min=1)
    strategy: str = option("auto", "Lightning strategy (auto, ddp, ...)")
    precision: str = option("32-true", "Lightning precision (32-true, bf16-mixed, ...)")
    restart_patience: int | None = option(
        None,
        "start again from fresh weights (a seed of their own) once the start's best "
        "val_bits_per_seq fell by less than --restart_min_improvement over this many "
        "validations while above --restart_above; the best checkpoint is kept across starts "
        "(0: never; empty: the NTM's task recipe, other models 0)",
        min=0,
    )
    restart_min_improvement: float | None = option(
        None,
        "relative fall of the start's best that counts as progress over --restart_patience "
        "validations (empty: the NTM's task recipe, copy 0.01, associative_recall 0.25)",
        min=0.0,
        max=1.0,
    )
    restart_above: float | None = option(
        None,
        "no restart once the start's best val_bits_per_seq is at or below this (empty: the "
        "NTM's task recipe, copy 0.1, associative_recall 1.0)",
        min=0.0,
    )
    relapse_factor: float | None = option(
        None,
        "roll back to the best weights of the start at half the rate when val_bits_per_seq "
        "rises above this x that best + 1 (0: never; empty: the NTM's task recipe, other "
        "models 0)",
        min=0.0,
    )
    compile: bool | None = option(
        None,
        "NTM: train through a compiled (fused) step (empty: on for runs of at least "
        f"{COMPILE_FROM_STEPS} steps and {COMPILE_FROM_MINUTES:g} minute, which amortize the "
        "compile)",
    )


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = option(0, "seed for weights and data", min=0)
    experiment_name: str | None = option(None, "MLflow experiment (default: the task name)")
    resume_run_id: str | None = option(
        None,
        "continue this interrupted train run from its last checkpoint, in the same MLflow run, "
        "with the config it recorded (other options are ignored)",
    )
    register_as: str | None = option(
        None,
        "register the model under this name in the MLflow registry (alias champion "
        "moves to it when its best val_bits_per_seq beats the current champion's)",
    )

    def resolve(self) -> None:
        """Fill options left empty with the model's recipe and the task's paper defaults, so
        runs log real values (an unknown name keeps None; validation names it)."""
        if self.optim.lr is None:
            self.optim.lr = RECIPE_LR.get(self.model.name)
        if self.optim.clip_value is None:
            self.optim.clip_value = RECIPE_CLIP.get(self.model.name)
        if self.trainer.compile is None:
            trainer = self.trainer  # a compile pays off in longer runs
            trainer.compile = (
                self.model.name == "ntm"
                and trainer.max_steps >= COMPILE_FROM_STEPS
                and trainer.max_minutes >= COMPILE_FROM_MINUTES
            )
        self._fill_task_recipe()
        task = TASKS.get(self.data.task)
        if task is None:
            return
        data = self.data
        if data.bits is None:
            data.bits = task.default_bits
        if data.min_len is None:
            data.min_len = task.default_range[0]
        if data.max_len is None:
            data.max_len = task.default_range[1]
        if not data.test_lengths:
            data.test_lengths = task.default_test_lengths
        if data.long_val_size is None:
            data.long_val_size = min(LONG_VAL_SIZE, data.val_size)

    def _fill_task_recipe(self) -> None:
        """The NTM's architecture, batch and decay follow the task (NTM_TASK_RECIPES); the
        NTM-only fields are filled for every model so the config is complete, but only an NTM
        run logs them."""
        recipe = NTM_TASK_RECIPES.get(self.data.task, NTM_TASK_RECIPES["copy"])
        is_ntm = self.model.name == "ntm"
        model, optim, data = self.model, self.optim, self.data
        if model.controller is None:
            model.controller = recipe.controller
        if model.location_first_init is None:
            model.location_first_init = recipe.location_first_init
        if model.controller_size is None:
            model.controller_size = recipe.controller_size
        if model.beta_init is None:
            model.beta_init = recipe.beta_init
        if model.memory_init is None:
            model.memory_init = recipe.memory_init
        if model.read_heads is None:
            model.read_heads = recipe.heads
        if model.write_heads is None:
            model.write_heads = recipe.heads
        if data.batch_size is None:
            data.batch_size = recipe.batch_size if is_ntm else RECIPE_BATCH_SIZE
        if data.curriculum_steps_per_length is None:
            data.curriculum_steps_per_length = recipe.curriculum_steps_per_length if is_ntm else 0
        trainer = self.trainer
        if trainer.restart_patience is None:
            trainer.restart_patience = recipe.restart_patience if is_ntm else 0
        if trainer.relapse_factor is None:
            trainer.relapse_factor = recipe.relapse_factor if is_ntm else 0.0
        if trainer.restart_min_improvement is None:
            trainer.restart_min_improvement = recipe.restart_min_improvement
        if trainer.restart_above is None:
            trainer.restart_above = recipe.restart_above
        if optim.lr_decay_floor is None:
            optim.lr_decay_floor = RECIPE_LR_DECAY_FLOOR.get(model.name, 0.0)
        if optim.lr_decay_patience is None:
            optim.lr_decay_patience = (
                recipe.lr_decay_patience if is_ntm else RECIPE_LR_DECAY_PATIENCE.get(model.name)
            )

    def check(self) -> None:
        """Cross-field rules that single-field bounds cannot express."""
        check_registered_name(self.register_as, "--register_as")
        model = self.model
        if model.name == "ntm" and 2 * model.shift_range + 1 > model.memory_slots:
            raise ConfigError(
                f"--shift_range ({model.shift_range}) needs 2 * shift_range + 1 <= --memory_slots "
                f"({model.memory_slots})"
            )
        if self.data.min_len > self.data.max_len:
            raise ConfigError(
                f"--min_len ({self.data.min_len}) must not exceed --max_len ({self.data.max_len})"
            )
        if self.data.long_val_size and not long_val_lengths(self.data):
            raise ConfigError(
                f"--long_val_max_len ({self.data.long_val_max_len}) leaves the long validation "
                f"set no length above --max_len ({self.data.max_len}) that is not a test length; "
                "raise it, or --long_val_size 0 for none"
            )
        if model.name == "ntm":
            self._check_memory_holds_the_longest_episode()
        if self.data.min_repeats > self.data.max_repeats:
            raise ConfigError(
                f"--min_repeats ({self.data.min_repeats}) must not exceed --max_repeats "
                f"({self.data.max_repeats})"
            )

    def _check_memory_holds_the_longest_episode(self) -> None:
        """An NTM cannot solve an episode with more vectors than memory rows: say so up front."""
        data = self.data
        try:
            task = TASKS[data.task](**task_options(data))
        except ValueError as error:
            raise ConfigError(str(error)) from error
        longest = max((data.max_len, *data.test_lengths, *long_val_lengths(data)))
        if self.model.memory_too_small(task, longest):
            raise ConfigError(
                f"{data.task} at length {longest} needs {task.slots_needed(longest)} memory "
                f"rows but --memory_slots is {self.model.memory_slots}; raise --memory_slots "
                "or shorten --max_len/--test_lengths/--long_val_max_len"
            )
