"""The train pipeline's library: fit one sequence model on one task in a tracked MLflow run.

:func:`train` plans the fit (resume, task, memory check, placement, data) before any run opens,
fits through the shared skeleton (:mod:`pipelines.common.fit`), then scores the best checkpoint
at the test lengths and logs those scores, figures, checkpoints and the model. With
``config.resume_run_id`` it continues that run from its last checkpoint, with the config the
run recorded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.trainer.states import RunningStage

from datamodules.synthetic import SyntheticDataModule, SyntheticTask
from models.metrics import score_batches
from pipelines.common.config import RESOLVED_PREFIX, flatten_params, from_dict, to_dict
from pipelines.common.ddp import worker_spec
from pipelines.common.fit import fit_in_lockstep, run_as_worker, run_fit, run_logger
from pipelines.common.placement import Placement, placement_of
from pipelines.sequence.build import count_parameters, make_datamodule, make_module, make_task
from pipelines.sequence.callbacks import MONITOR, SequenceCallbacks, sequence_callbacks
from pipelines.sequence.config import TrainConfig, long_val_lengths
from pipelines.sequence.memory_budget import check_fits_in_memory
from pipelines.sequence.trained import describe
from pipelines.tracking.checkpoints import AtomicCheckpointIO, load_checkpoint
from pipelines.tracking.datasets import synthetic_inputs
from pipelines.tracking.models import log_model, tensor_signature
from pipelines.tracking.outbox import TrackingOutbox
from pipelines.tracking.registry import register
from pipelines.tracking.resume import (
    CHECKPOINT_ARTIFACT_DIR,
    CONFIG_ARTIFACT,
    LAST,
    checkpoint_dir,
    prepare_resume,
)
from pipelines.tracking.runs import TrackedRun
from pipelines.tracking.store import run_dir

PIPELINE = "train"
WORKER_ENTRY = f"{__name__}:fit_as_worker"


@dataclass
class TrainResult:
    run_id: str
    best_score: float
    steps: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    param_count: int = 0
    primary: bool = True  # False on DDP ranks other than 0, which neither score nor clean up


@dataclass
class TrainPlan:
    """Everything one fit needs, built and checked before any run opens (bad input fails here,
    with nothing started)."""

    config: TrainConfig
    task: SyntheticTask
    datamodule: SyntheticDataModule
    placement: Placement
    checkpoint: str | None = None  # the checkpoint a resume continues from
    logged_through: dict[str, int] = field(default_factory=dict)  # a resumed run's metric steps


def plan_fit(config: TrainConfig, checkpoint: str | None = None) -> TrainPlan:
    """The plan of ``config``; with ``config.resume_run_id``, of the run's recorded config."""
    logged_through: dict[str, int] = {}
    if config.resume_run_id and checkpoint is None:
        resume = prepare_resume(config.resume_run_id, PIPELINE)
        run_id, config = config.resume_run_id, from_dict(TrainConfig, resume.config)
        config.resume_run_id = run_id
        checkpoint, logged_through = str(resume.checkpoint), resume.logged_through
        print(f"train: resuming run {run_id} from {checkpoint}", flush=True)
    task = make_task(config.data)
    check_fits_in_memory(config, task.input_width, task.output_width)
    placement = placement_of(config.trainer)
    datamodule = make_datamodule(config, task)
    return TrainPlan(config, task, datamodule, placement, checkpoint, logged_through)


def train(
    config: TrainConfig,
    callbacks: Sequence[pl.Callback] = (),
    nested: bool = False,
    tags: dict[str, str] | None = None,
    failure_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Fit ``config`` in a tracked MLflow run; extra ``callbacks`` (e.g. pruning) join the fit,
    extra ``tags`` (e.g. the Optuna trial) label the run from its start and ``failure_tags``
    label it if it fails."""
    plan = plan_fit(config)
    config = plan.config
    result = run_fit(
        PIPELINE,
        config.experiment_name or config.data.task,
        f"{config.model.name}-{config.data.task}",
        primary=lambda run: _train_in(run, plan, callbacks),
        worker=lambda run_id: _fit_as_worker(plan, run_id),
        tags=tags,
        nested=nested,
        resume_run_id=config.resume_run_id,
        failure_tags=failure_tags,
    )
    return result


def fit_as_worker(spec: dict[str, Any]) -> None:
    """The fit of a DDP worker that rank 0 started (``python -m pipelines.ddp_worker``)."""
    plan = plan_fit(from_dict(TrainConfig, spec["config"]), spec["checkpoint"])
    _fit_as_worker(plan, spec["run_id"])


def _fit_as_worker(plan: TrainPlan, run_id: str) -> TrainResult:
    """A data-parallel worker (rank > 0): the same fit in lockstep with rank 0."""
    result = run_as_worker(lambda: _fit(plan, run_id, None))
    return result or TrainResult(run_id, float("nan"), 0, 0.0, primary=False)


def _train_in(run: TrackedRun, plan: TrainPlan, callbacks: Sequence[pl.Callback]) -> TrainResult:
    """Rank 0's fit in ``run``: record the start (or skip what a resumed run logged), fit,
    score, log, describe, register."""
    if plan.checkpoint is None:
        _record_start(plan, run.run_id, run.outbox)
    else:
        run.outbox.skip_logged(plan.logged_through)
    result = _fit(plan, run.run_id, run.outbox, callbacks)
    config = plan.config
    run.describe(headline(config, plan.task, result.metrics, result.steps))
    if config.register_as:
        version = register(
            run.client, run.run_id, config.register_as, MONITOR, result.best_score, "minimize"
        )
        print(f"train: registered as {config.register_as} version {version.version}")
    return result


def _record_start(plan: TrainPlan, run_id: str, outbox: TrackingOutbox) -> None:
    """Params, size, datasets, and the config a resume rebuilds the run from."""
    config, task, data = plan.config, plan.task, plan.config.data
    params = flatten_params(config)
    params.pop(RESOLVED_PREFIX + "resume_run_id")  # always empty on a run's first start
    outbox.log_params(params)
    outbox.log_inputs(
        synthetic_inputs(
            task,
            config.seed,
            data.val_size,
            data.test_lengths,
            data.test_size,
            (data.long_val_size, long_val_lengths(data)),
        )
    )
    recorded = run_dir(run_id) / "config" / Path(CONFIG_ARTIFACT).name
    recorded.parent.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(to_dict(config), indent=2))
    outbox.log_artifact(recorded, str(Path(CONFIG_ARTIFACT).parent))


def trainer_args(
    config: TrainConfig, workdir: Path, checkpoint_io: AtomicCheckpointIO
) -> dict[str, Any]:
    """The ``pl.Trainer`` arguments of a sequence fit (placement and callbacks come apart)."""
    run = config.trainer
    return {
        "max_steps": run.max_steps,
        "max_epochs": -1,
        "max_time": timedelta(minutes=run.max_minutes),
        "log_every_n_steps": run.log_every_n_steps,
        # the synthetic datamodule shards its own stream and fixed sets by rank
        "use_distributed_sampler": False,
        "precision": run.precision,
        "default_root_dir": workdir,
        "num_sanity_val_steps": 0,
        "enable_model_summary": False,
        "enable_progress_bar": run.progress_bar,
        "plugins": [checkpoint_io],
    }


def _fit(
    plan: TrainPlan,
    run_id: str,
    outbox: TrackingOutbox | None,
    extra: Sequence[pl.Callback] = (),
) -> TrainResult:
    """Fit and, on rank 0 (``outbox`` given), score and log. A DDP worker passes no outbox."""
    config = plan.config
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = make_module(config, plan.task)
    if outbox is not None and plan.checkpoint is None:
        outbox.log_metrics({"param_count": count_parameters(module.model)}, step=0)
    checkpoints = checkpoint_dir(run_id)
    log_figure = outbox.log_figure if outbox is not None else None
    callbacks = sequence_callbacks(
        config, plan.task, plan.datamodule, checkpoints, log_figure, extra
    )
    # every checkpoint save is queued for upload (newest wins), so the run's artifacts always
    # hold the latest best/last checkpoint; nothing needs uploading after the fit
    mirror = None
    if outbox is not None:
        mirror = lambda path: outbox.log_artifact(path, CHECKPOINT_ARTIFACT_DIR)  # noqa: E731
    spec = worker_spec(WORKER_ENTRY, to_dict(config), run_id, plan.checkpoint)
    checkpoint_io = AtomicCheckpointIO(mirror)
    fitted = fit_in_lockstep(
        module,
        plan.datamodule,
        plan.placement,
        spec,
        trainer_args(config, run_dir(run_id), checkpoint_io),
        callbacks.all(),
        logger=run_logger(run_id, outbox),
        ckpt_path=plan.checkpoint,
        checkpoint_on_signal=checkpoints / LAST,
    )
    trainer = fitted.trainer
    seconds = train_seconds(trainer, fitted.seconds)
    if outbox is None:
        return TrainResult(run_id, float("nan"), trainer.global_step, seconds, primary=False)
    metrics = training_metrics(config, trainer, callbacks, seconds, outbox)
    metrics["checkpoint_time_s"] = checkpoint_io.seconds
    best_step = _restore_best(module, callbacks.checkpoint.best_model_path)
    best, scores = score_best(module, plan)
    metrics.update(scores)
    if best_step is not None:  # which validation the selection kept
        metrics["best_step"] = float(best_step)
    steps = trainer.global_step
    outbox.log_metrics(metrics, step=steps)
    callbacks.figures.log_final(module, steps)
    outbox.flush(force=True)  # the scores in the store first: the model links those at its step
    _log_model(module, config, plan.task, plan.datamodule, run_id, steps)
    param_count = count_parameters(module.model)
    return TrainResult(run_id, best, steps, seconds, metrics, param_count=param_count)


def train_seconds(trainer: pl.Trainer, fallback: float) -> float:
    """Training time across resumes (Lightning's Timer keeps it in the checkpoint)."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            return float(callback.time_elapsed(RunningStage.TRAINING))
    return fallback


def training_metrics(
    config: TrainConfig,
    trainer: pl.Trainer,
    callbacks: SequenceCallbacks,
    seconds: float,
    outbox: TrackingOutbox,
) -> dict[str, float]:
    """How the fit went: time, throughput, setbacks, and when it reached ``--stop_at``."""
    sequences_per_step = config.data.batch_size * trainer.world_size  # every process's batch
    sequences = trainer.global_step * sequences_per_step
    figures, setbacks, stopper = callbacks.figures, callbacks.setbacks, callbacks.stopper
    metrics = {
        "logging_time_s": outbox.seconds_spent + figures.draw_seconds,  # this session's fit
        # where the rest of this session's fit went (docs/tracking.md lists the parts)
        "train_steps_time_s": callbacks.clock.step_seconds,
        "validation_time_s": callbacks.clock.validation_seconds,
        "train_time_s": seconds,
        "sequences_seen": float(sequences),
        "train_seq_per_s": sequences / max(seconds, 1e-9),
        "restarts": float(setbacks.restarts if setbacks is not None else 0),
        "rollbacks": float(setbacks.rollbacks if setbacks is not None else 0),
    }
    if callbacks.clock.first_step_seconds is not None:  # the compile, with --compile
        metrics["first_step_s"] = callbacks.clock.first_step_seconds
    if stopper is not None:
        metrics["reached_stop_at"] = float(stopper.reached_at is not None)
        if stopper.reached_at is not None:
            reached_step, reached_seconds = stopper.reached_at
            metrics["steps_to_stop_at"] = float(reached_step)
            metrics["seconds_to_stop_at"] = reached_seconds
            metrics["sequences_to_stop_at"] = float(reached_step * sequences_per_step)
    return metrics


def _restore_best(module: pl.LightningModule, best_path: str) -> int | None:
    """Load the selected checkpoint's weights; its global step, or None without one."""
    if not (best_path and Path(best_path).is_file()):
        return None
    checkpoint = load_checkpoint(best_path)
    module.load_state_dict(checkpoint["state_dict"])
    return int(checkpoint["global_step"])


def score_best(module: pl.LightningModule, plan: TrainPlan) -> tuple[float, dict[str, float]]:
    """The restored best weights scored on the validation set and at every test length,
    seeded like ``evaluate`` so a model with a random starting memory scores the same there:
    ``(best val bits/seq, metrics)``."""
    config, datamodule, device = plan.config, plan.datamodule, module.device
    best = score_batches(module.model, datamodule.val_batches(), device, seed=config.seed)
    metrics = {
        "best_val_bits_per_seq": best["bits_per_seq"],
        "best_val_bit_acc": best["bit_acc"],
    }
    if datamodule.long_val_size:
        long = score_batches(module.model, datamodule.long_val_batches(), device, seed=config.seed)
        metrics["best_val_long_bits_per_seq"] = long["bits_per_seq"]
        metrics["best_val_long_bit_acc"] = long["bit_acc"]
    for length in config.data.test_lengths:
        batches = datamodule.test_batches(length)
        scores = score_batches(module.model, batches, device, seed=config.seed)
        metrics[f"bit_acc_L{length}"] = scores["bit_acc"]
        metrics[f"bits_per_seq_L{length}"] = scores["bits_per_seq"]
    return best["bits_per_seq"], metrics


def _log_model(
    module: pl.LightningModule,
    config: TrainConfig,
    task: SyntheticTask,
    datamodule: SyntheticDataModule,
    run_id: str,
    step: int,
) -> None:
    """The core as the run's MLflow Model: ``[B,T,I] -> logits [B,T,O]``, any B and T, holding
    the scores logged at ``step``."""
    example = datamodule.val_batches()[0].inputs[:2]
    signature = tensor_signature((-1, -1, task.input_width), (-1, -1, task.output_width))
    log_model(run_id, module.model, signature, example, describe(config, task), step)


def headline(
    config: TrainConfig, task: SyntheticTask, metrics: dict[str, float], steps: int
) -> str:
    """The run's one-line description: model, task and the headline score."""
    longest = max(config.data.test_lengths, default=None)
    label = task.label(longest) if longest else None
    line = (
        f"{config.model.name} on {config.data.task}: best validation "
        f"{metrics['best_val_bits_per_seq']:.3f} bits/seq "
        f"({100 * metrics['best_val_bit_acc']:.2f} % of bits) after {steps:,} steps"
    )
    if label is not None:
        line += f"; {100 * metrics[f'bit_acc_{label}']:.2f} % of bits at test length {longest}"
    return line + "."
