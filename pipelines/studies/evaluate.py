"""The evaluate pipeline's library: load trained models from runs, URIs or checkpoints, score
them on the same seeded test sets, and log the comparison into one evaluation run. What the
command does and logs: :mod:`pipelines.evaluate` (its ``--help``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from mlflow.tracking import MlflowClient

from datamodules.synthetic import RepeatCopyTask, SyntheticTask, make_test_set
from models.metrics import score_batches
from pipelines.common.config import RESOLVED_PREFIX, ConfigError, flatten_params, option
from pipelines.sequence.trained import TrainedModel, load_from_checkpoint, load_trained
from pipelines.studies.comparison import ScoreRow, log_comparison, summary_markdown
from pipelines.tracking.runs import tracked_run
from pipelines.tracking.store import check_reachable, tracking_uri

EVALUATED_RUNS_TAG = "ntmlab.evaluated_run_ids"
EVALUATION_TAG = "ntmlab.evaluation_run_id"


@dataclass
class EvaluateConfig:
    run_ids: tuple[str, ...] = option((), "comma-separated train run ids to evaluate")
    models: tuple[str, ...] = option(
        (),
        "comma-separated MLflow model URIs: runs:/<run id>/model, models:/<name>@<alias>, "
        "models:/<name>/<version>",
    )
    checkpoints: tuple[str, ...] = option(
        (), "comma-separated train checkpoint files to evaluate (instead of or beside runs)"
    )
    lengths: tuple[int, ...] = option(
        (),
        "comma-separated test lengths (items for associative_recall); empty: the task's "
        "(copy 10,20,40,80,120; repeat_copy 10,20; associative_recall 2,4,...,12)",
        min=1,
    )
    repeats: tuple[int, ...] = option(
        (), "repeat_copy: comma-separated repeat counts (empty: 10,20)", min=1
    )
    test_size: int = option(1000, "episodes per test set", min=1)
    eval_batch_size: int = option(500, "episodes per forward pass", min=1)
    seed: int = option(0, "seed of the test sets (same seed, same episodes)", min=0)
    device: str = option("auto", "where to run the models: auto, cpu, cuda, cuda:1, ...")
    experiment_name: str | None = option(
        None, "MLflow experiment of the evaluation run (default: the first model's)"
    )

    def check(self) -> None:
        if not self.run_ids and not self.models and not self.checkpoints:
            raise ConfigError(
                "give --run_ids, --models or --checkpoints (what should be evaluated?)"
            )
        for uri in self.models:
            if not uri.startswith(("runs:/", "models:/")):
                raise ConfigError(f"--models: {uri!r} is not a runs:/ or models:/ URI")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: {name!r} is not a device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: CUDA was asked for but is not available here")
    return device


def test_tasks(task: SyntheticTask, repeats: tuple[int, ...]) -> list[SyntheticTask]:
    """One task per fixed repeat count for repeat copy; the task itself otherwise."""
    if isinstance(task, RepeatCopyTask):
        try:
            return [task.with_repeats(count) for count in repeats or task.default_eval_repeats]
        except ValueError as error:
            raise ConfigError(f"--repeats: {error}") from None
    if repeats:
        raise ConfigError(f"--repeats applies to repeat_copy, not {task.name}")
    return [task]


def load_models(config: EvaluateConfig) -> list[TrainedModel]:
    """Every requested model, checked to share one task; errors before any run is opened."""
    models: list[TrainedModel] = []
    if config.run_ids or config.models:
        uri = tracking_uri()
        check_reachable(uri)
        client = MlflowClient(uri)
        models += [load_trained(source, client) for source in (*config.run_ids, *config.models)]
    models += [load_from_checkpoint(path) for path in config.checkpoints]
    tasks = {(model.config.data.task, model.task.input_width) for model in models}
    if len(tasks) > 1:
        names = ", ".join(f"{m.label}: {m.config.data.task}" for m in models)
        raise ConfigError(f"models trained on different tasks cannot share test sets ({names})")
    labels = [model.label for model in models]
    for index, model in enumerate(models):
        if labels.count(model.label) > 1:
            model.label = f"{model.label}-{index}"
    return models


def plan_test_sets(
    models: list[TrainedModel], lengths: tuple[int, ...], repeats: tuple[int, ...]
) -> list[tuple[SyntheticTask, int]]:
    """``(task, length)`` of every test set, each checked against the task and every model's
    memory, so a bad length fails before anything is computed or logged."""
    reference = models[0].task
    plan = [
        (task, length)
        for task in test_tasks(reference, repeats)
        for length in lengths or reference.default_eval_lengths
    ]
    for task, length in plan:
        try:
            task.check_length(length)
        except ValueError as error:
            raise ConfigError(f"--lengths: {error}") from None
        for model in models:
            if model.config.model.memory_too_small(task, length):
                raise ConfigError(
                    f"--lengths: {task.name} at length {length} needs "
                    f"{task.slots_needed(length)} memory rows; {model.label} has "
                    f"{model.config.model.memory_slots}"
                )
    return plan


def score_models(
    models: list[TrainedModel],
    plan: list[tuple[SyntheticTask, int]],
    test_size: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> list[ScoreRow]:
    """Score every model on the same seeded test sets: one row per model and test set."""
    for model in models:
        model.core.to(device)
    rows = []
    for task, length in plan:
        batches = make_test_set(task, length, test_size, batch_size, seed)
        for model in models:
            scores = score_batches(model.core, batches, device, seed=seed)
            rows.append(
                ScoreRow(
                    model=model.label,
                    model_type=model.config.model.name,
                    run_id=model.run_id or "",
                    param_count=model.param_count,
                    task=task.name,
                    length=length,
                    repeats=getattr(task, "test_repeats", None),
                    label=task.label(length),
                    bit_acc=scores["bit_acc"],
                    bits_per_seq=scores["bits_per_seq"],
                )
            )
    return rows


def evaluate(config: EvaluateConfig) -> tuple[str, list[ScoreRow]]:
    """Load, score and log; returns the evaluation run id and the score rows."""
    device = _device(config.device)
    models = load_models(config)
    plan = plan_test_sets(models, config.lengths, config.repeats)
    experiment = config.experiment_name or _experiment_of(models[0])
    evaluated = [model.run_id for model in models if model.run_id]
    tags = {"ntmlab.pipeline": "evaluate", EVALUATED_RUNS_TAG: ",".join(evaluated)}
    with tracked_run(experiment, f"evaluate-{models[0].config.data.task}", tags) as run:
        params = flatten_params(config)
        used = dict.fromkeys(length for _, length in plan)
        params[RESOLVED_PREFIX + "lengths"] = ",".join(map(str, used))
        params[RESOLVED_PREFIX + "task"] = models[0].config.data.task
        run.outbox.log_params(
            {key: value for key, value in params.items() if value not in ("", None)}
        )
        rows = score_models(
            models, plan, config.test_size, config.eval_batch_size, config.seed, device
        )
        log_comparison(run.outbox, rows, prefix_models=len(models) > 1)
        run.report("evaluate", summary_markdown(rows))
        for run_id in evaluated:
            run.client.set_tag(run_id, EVALUATION_TAG, run.run_id)
    return run.run_id, rows


def _experiment_of(model: TrainedModel) -> str:
    if model.run_id is None:
        return model.config.experiment_name or model.config.data.task
    client = MlflowClient(tracking_uri())
    return client.get_experiment(client.get_run(model.run_id).info.experiment_id).name
