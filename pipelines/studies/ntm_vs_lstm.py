"""The ntm_vs_lstm pipeline's library: the two children's configs, their training as nested
runs, and the side-by-side comparison in the parent. What the command does and logs:
:mod:`pipelines.experiments` (its ``--help``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datamodules.tasks import TASKS
from pipelines.common.config import ConfigError, configured, flatten_params, option
from pipelines.common.placement import PlacementConfig, placement_of, placement_options
from pipelines.sequence.build import make_task
from pipelines.sequence.config import SEQUENCE_TASKS, TrainConfig
from pipelines.sequence.fit import MONITOR, TrainResult, train
from pipelines.studies.comparison import ScoreRow, log_comparison, summary_markdown
from pipelines.tracking.registry import register
from pipelines.tracking.runs import tracked_run

MODELS = ("ntm", "lstm")
REFERENCE_COPY_LENGTHS = (5, 10, 20, 40, 80, 120)
SUMMARY = "evaluation/summary.md"


@dataclass
class NtmVsLstmConfig:
    task: str = option("copy", "task both models train on", choices=SEQUENCE_TASKS)
    budget_minutes: float = option(
        45.0, "training wall-clock of each model (the one budget)", min=0.0, exclusive_min=True
    )
    stop_at: float | None = option(
        0.01,
        "a model stops early once its val_bits_per_seq <= this (empty: each trains the whole "
        "budget); the NTM solves copy in about a minute, so this spares the rest of its budget",
        min=0.0,
    )
    seed: int = option(0, "seed of weights and data, shared by both models", min=0)
    test_lengths: tuple[int, ...] = option(
        (),
        "comma-separated test lengths (empty: copy 5,10,20,40,80,120; other tasks their "
        "evaluation lengths)",
        min=1,
    )
    batch_size: int = option(64, "sequences per training batch", min=1)
    batches_per_epoch: int = option(200, "training batches between validations", min=1)
    val_size: int = option(1000, "sequences in the fixed validation set", min=1)
    test_size: int = option(1000, "sequences per test length", min=1)
    progress_bar: bool = option(True, "show Lightning's progress bar")
    experiment_name: str | None = option(None, "MLflow experiment (default: ntm_vs_lstm-<task>)")
    placement: PlacementConfig = field(default_factory=PlacementConfig)  # each model's training

    def resolve(self) -> None:
        if not self.test_lengths and self.task in TASKS:
            default = TASKS[self.task].default_eval_lengths
            self.test_lengths = REFERENCE_COPY_LENGTHS if self.task == "copy" else default


def child_config(config: NtmVsLstmConfig, model: str, experiment: str) -> TrainConfig:
    """The train config of one side, as if typed: everything but the model is shared."""
    shared = {
        "model": model,
        "seed": config.seed,
        "experiment_name": experiment,
        "task": config.task,
        "test_lengths": config.test_lengths,
        "batch_size": config.batch_size,
        "batches_per_epoch": config.batches_per_epoch,
        "val_size": config.val_size,
        "test_size": config.test_size,
        "max_minutes": config.budget_minutes,
        "max_steps": 10**9,  # the budget is wall-clock
        "stop_at": config.stop_at,
        "progress_bar": config.progress_bar,
        **placement_options(config.placement),
    }
    try:
        return configured(TrainConfig, shared)
    except ConfigError as error:
        raise ConfigError(f"{model}: {error}") from None


def rows_of(model: str, config: TrainConfig, result: TrainResult) -> list[ScoreRow]:
    """The child's test scores (its best checkpoint, scored by the train pipeline)."""
    metrics = result.metrics
    task = make_task(config.data)
    return [
        ScoreRow(
            model=model,
            model_type=model,
            run_id=result.run_id,
            param_count=result.param_count,
            task=config.data.task,
            length=length,
            repeats=None,
            label=task.label(length),
            bit_acc=metrics[f"bit_acc_{task.label(length)}"],
            bits_per_seq=metrics[f"bits_per_seq_{task.label(length)}"],
            train_time_s=result.seconds,
        )
        for length in config.data.test_lengths
    ]


def ntm_vs_lstm(config: NtmVsLstmConfig) -> tuple[str, list[ScoreRow]]:
    """Parent run with one child train run per model; returns the parent id and the rows."""
    experiment = config.experiment_name or f"ntm_vs_lstm-{config.task}"
    placement_of(config.placement)  # a bad placement fails before anything starts
    children = {model: child_config(config, model, experiment) for model in MODELS}
    tags = {"ntmlab.pipeline": "ntm_vs_lstm"}
    with tracked_run(experiment, f"ntm_vs_lstm-{config.task}", tags) as parent:
        outbox = parent.outbox
        outbox.log_params({k: v for k, v in flatten_params(config).items() if v is not None})
        rows: list[ScoreRow] = []
        for model, child in children.items():
            result = train(child, nested=True)
            rows += rows_of(model, child, result)
            outbox.log_metrics(
                {
                    f"{model}/param_count": result.param_count,
                    f"{model}/train_time_s": result.seconds,
                },
                step=0,
            )
            name = f"{model}-{config.task}"
            version = register(
                parent.client,
                result.run_id,
                name,
                MONITOR,
                result.best_score,
                "minimize",
                {"ntmlab.ntm_vs_lstm_run_id": parent.run_id},
            )
            print(f"ntm_vs_lstm: {model} registered as {name} version {version.version}")
        log_comparison(outbox, rows, prefix_models=True)
        summary = summary_markdown(rows)
        outbox.log_text(summary, SUMMARY)
        parent.report("ntm_vs_lstm", summary)
    return parent.run_id, rows
