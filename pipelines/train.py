"""Train one model on one task and record everything in MLflow.

    python -m pipelines.train --model lstm --task copy --max_steps 2000

Parse and validate the config, open (or continue) the MLflow run, build data and model, fit,
then log the best checkpoint's scores at the test lengths, figures, checkpoints and the model.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, Timer
from pytorch_lightning.trainer.states import RunningStage
from pytorch_lightning.utilities.exceptions import SIGTERMException

from models.metrics import score_batches
from pipelines.callbacks import (
    AgreeOnStop,
    AlignLoggingStepOnResume,
    FirstStepTimer,
    LogCurriculum,
    RecordInCheckpoint,
    StopAtThreshold,
)
from pipelines.cli import run_pipeline
from pipelines.config import RESOLVED_PREFIX, flatten_params, from_dict, to_dict
from pipelines.factory import (
    count_parameters,
    fresh_core_state,
    make_datamodule,
    make_module,
    make_task,
    setback_rules,
)
from pipelines.interrupts import (
    RunInterrupted,
    StopOnSignal,
    deferred,
    interrupt_guard,
    keep_lightning_off_signals,
    pending_signal,
)
from pipelines.memory_budget import check_fits_in_memory
from pipelines.plots import SequenceFigureLogger
from pipelines.scaling import (
    Placement,
    is_worker_process,
    placement_of,
    worker_processes,
    worker_run_id,
)
from pipelines.tracking.checkpoints import AtomicCheckpointIO, load_checkpoint
from pipelines.tracking.datasets import synthetic_inputs
from pipelines.tracking.logger import RunBoundLogger
from pipelines.tracking.models import (
    CHECKPOINT_DESCRIPTION_KEY,
    describe,
    log_model,
    tensor_signature,
)
from pipelines.tracking.outbox import TrackingOutbox
from pipelines.tracking.registry import register
from pipelines.tracking.resume import (
    BEST,
    CHECKPOINT_ARTIFACT_DIR,
    CONFIG_ARTIFACT,
    LAST,
    checkpoint_dir,
    prepare_resume,
)
from pipelines.tracking.runs import TrackedRun, tracked_run
from pipelines.tracking.store import run_dir
from pipelines.train_config import TrainConfig

MONITOR, MONITOR_MODE = "val_bits_per_seq", "min"


@dataclass
class TrainResult:
    run_id: str
    best_score: float
    steps: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    param_count: int = 0
    primary: bool = True  # False on DDP ranks other than 0, which neither score nor clean up


def build_trainer(
    config: TrainConfig,
    logger,
    callbacks: Sequence[pl.Callback],
    workdir: Path,
    checkpoint_io: AtomicCheckpointIO | None = None,
    placement: Placement | None = None,
) -> pl.Trainer:
    run = config.trainer
    placement = placement or placement_of(run)
    return pl.Trainer(
        max_steps=run.max_steps,
        max_epochs=-1,
        max_time=timedelta(minutes=run.max_minutes),
        logger=logger,
        callbacks=list(callbacks),
        log_every_n_steps=run.log_every_n_steps,
        **placement.trainer_kwargs,
        # the synthetic datamodule shards its own stream and fixed sets by rank
        use_distributed_sampler=False,
        precision=run.precision,
        default_root_dir=workdir,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=run.progress_bar,
        plugins=[checkpoint_io or AtomicCheckpointIO()],
    )


def _log_model(module: pl.LightningModule, config: TrainConfig, task, datamodule, run_id: str):
    """The core as the run's MLflow Model: ``[B,T,I] -> logits [B,T,O]``, any B and T."""
    example = datamodule.val_batches()[0].inputs[:2]
    signature = tensor_signature((-1, -1, task.input_width), (-1, -1, task.output_width))
    log_model(run_id, module.model, signature, example, describe(config, task))


def headline(config: TrainConfig, task, metrics: dict[str, float], steps: int) -> str:
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


def _restore_best(module: pl.LightningModule, checkpoint: ModelCheckpoint) -> None:
    if checkpoint.best_model_path and Path(checkpoint.best_model_path).is_file():
        state = load_checkpoint(checkpoint.best_model_path)
        module.load_state_dict(state["state_dict"])


def _record_start(
    config: TrainConfig, module: pl.LightningModule, task, workdir: Path, outbox: TrackingOutbox
) -> None:
    """Params, size, datasets, and the config a resume rebuilds the run from."""
    params = flatten_params(config)
    params.pop(RESOLVED_PREFIX + "resume_run_id")  # always empty on a run's first start
    outbox.log_params(params)
    data = config.data
    outbox.log_inputs(
        synthetic_inputs(task, config.seed, data.val_size, data.test_lengths, data.test_size)
    )
    outbox.log_metrics({"param_count": count_parameters(module.model)}, step=0)
    recorded = workdir / "config" / Path(CONFIG_ARTIFACT).name
    recorded.parent.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(to_dict(config), indent=2))
    outbox.log_artifact(recorded, str(Path(CONFIG_ARTIFACT).parent))


def train_seconds(trainer: pl.Trainer, fallback: float) -> float:
    """Training time across resumes (Lightning's Timer keeps it in the checkpoint)."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            return float(callback.time_elapsed(RunningStage.TRAINING))
    return fallback


def train(
    config: TrainConfig,
    callbacks: Sequence[pl.Callback] = (),
    nested: bool = False,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """Fit ``config`` in a tracked MLflow run; extra ``callbacks`` (e.g. pruning) join the fit
    and extra ``tags`` (e.g. the Optuna trial) label the run from its start.

    With ``config.resume_run_id`` the run's recorded config and last checkpoint are used, and
    training continues in that same run.
    """
    resume = prepare_resume(config.resume_run_id) if config.resume_run_id else None
    if resume is not None:
        config = resume.config
        print(f"train: resuming run {config.resume_run_id} from {resume.checkpoint}", flush=True)
    task = make_task(config.data)
    check_fits_in_memory(config, task.input_width, task.output_width)
    placement = placement_of(config.trainer)
    datamodule = make_datamodule(config, task)
    ckpt_path = str(resume.checkpoint) if resume is not None else None
    if is_worker_process():  # another node's first process, started by the user (num_nodes)
        return _train_as_worker(config, worker_run_id(), ckpt_path, placement)
    experiment = config.experiment_name or config.data.task
    run_name = f"{config.model.name}-{config.data.task}"
    tags = {"ntmlab.pipeline": "train", **(tags or {})}
    with (
        interrupt_guard(),
        tracked_run(
            experiment, run_name, tags, nested, config.resume_run_id, system_metrics=True
        ) as run,
    ):
        pl.seed_everything(config.seed, workers=True, verbose=False)
        module = make_module(config, task)
        if resume is None:
            _record_start(config, module, task, run_dir(run.run_id), run.outbox)
        else:
            run.outbox.skip_logged(resume.logged_through)
        result = _fit_and_score(
            config, module, datamodule, task, run.run_id, run.outbox, callbacks, ckpt_path,
            placement,
        )  # fmt: skip
        _finish(config, task, run, result)
    return result


def _finish(config: TrainConfig, task, run: TrackedRun, result: TrainResult) -> None:
    """Describe the run and, with ``--register_as``, register its model."""
    run.describe(headline(config, task, result.metrics, result.steps))
    if config.register_as:
        version = register(
            run.client, run.run_id, config.register_as, MONITOR, result.best_score, "minimize"
        )
        print(f"train: registered as {config.register_as} version {version.version}")


def train_worker(spec: dict) -> TrainResult:
    """The fit of a DDP worker that rank 0 started (:mod:`pipelines.ddp_worker`)."""
    config = from_dict(TrainConfig, spec["config"])
    return _train_as_worker(
        config, spec["run_id"], spec["checkpoint"], placement_of(config.trainer)
    )


def _train_as_worker(
    config: TrainConfig, run_id: str, ckpt_path: str | None, placement: Placement
) -> TrainResult:
    """A data-parallel worker (rank > 0): the same fit in lockstep with rank 0, which alone
    tracks, checkpoints and scores. An interruption is rank 0's to report: the worker leaves
    quietly (exit 0)."""
    task = make_task(config.data)
    datamodule = make_datamodule(config, task)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = make_module(config, task)
    with interrupt_guard():
        try:
            return _fit_and_score(
                config, module, datamodule, task, run_id, None, (), ckpt_path, placement
            )
        except RunInterrupted:
            return TrainResult(run_id, float("nan"), 0, 0.0, primary=False)


def _fit_and_score(
    config: TrainConfig,
    module: pl.LightningModule,
    datamodule,
    task,
    run_id: str,
    outbox: TrackingOutbox | None,
    callbacks: Sequence[pl.Callback],
    ckpt_path: str | None,
    placement: Placement,
) -> TrainResult:
    """Fit and, on rank 0, score and log. A worker passes no outbox (and no callbacks of the
    caller's: a pruning decision reaches it through :class:`AgreeOnStop`)."""
    workdir = run_dir(run_id)
    checkpoints = checkpoint_dir(run_id)
    checkpoint = ModelCheckpoint(
        dirpath=checkpoints,
        filename=Path(BEST).stem,
        monitor=MONITOR,
        mode=MONITOR_MODE,
        save_last=True,
        enable_version_counter=False,
    )
    figures = None  # rank 0 alone draws and logs figures
    if outbox is not None:
        figures = SequenceFigureLogger(
            datamodule.plot_example(), outbox.log_figure, config.trainer.plot_every_n_val
        )
    on_signal = StopOnSignal(checkpoints / LAST)
    first_step = FirstStepTimer()
    fit_callbacks: list[pl.Callback] = [
        first_step,
        checkpoint,
        *([figures] if figures is not None else []),
        on_signal,
        AlignLoggingStepOnResume(),
        RecordInCheckpoint(CHECKPOINT_DESCRIPTION_KEY, describe(config, task)),
        *callbacks,
    ]
    stopper = None
    if config.trainer.stop_at is not None:
        stopper = StopAtThreshold(MONITOR, config.trainer.stop_at, MONITOR_MODE)
        fit_callbacks.append(stopper)
    setbacks = setback_rules(config, MONITOR, partial(fresh_core_state, config, task))
    if setbacks is not None:
        fit_callbacks.append(setbacks)
        datamodule.follow_starts(lambda: setbacks.start_step)  # a restart begins its curriculum
    if datamodule.curriculum is not None:
        fit_callbacks.append(LogCurriculum(datamodule.train_upper))
    fit_callbacks.append(AgreeOnStop())  # after every callback that may stop the fit
    if outbox is not None:
        logger = RunBoundLogger(run_id, outbox)
        # every checkpoint save is queued for upload (newest wins), so the run's artifacts
        # always hold the latest best/last checkpoint; nothing needs uploading after the fit
        mirror = partial(outbox.log_artifact, artifact_path=CHECKPOINT_ARTIFACT_DIR)
        checkpoint_io = AtomicCheckpointIO(mirror)
    else:
        logger, checkpoint_io = False, AtomicCheckpointIO()
    started = time.perf_counter()
    try:
        # the workers' environment (LOCAL_RANK, ...) must exist before the Trainer reads it
        spec = {"pipeline": "train", "config": to_dict(config), "run_id": run_id,
                "checkpoint": ckpt_path}  # fmt: skip
        with deferred(), worker_processes(placement, spec):
            trainer = build_trainer(
                config, logger, fit_callbacks, workdir, checkpoint_io, placement
            )
            keep_lightning_off_signals(trainer)
            if logger:
                logger.use_steps_of(trainer)
            trainer.fit(
                module,
                datamodule=datamodule,
                ckpt_path=ckpt_path,
            )
    except SIGTERMException:
        raise RunInterrupted("SIGTERM") from None
    if pending_signal() is not None:  # the signal came during the last validation
        raise RunInterrupted(pending_signal())
    seconds = train_seconds(trainer, time.perf_counter() - started)
    steps = trainer.global_step
    if outbox is None:
        return TrainResult(run_id, float("nan"), steps, seconds, primary=False)

    sequences = steps * config.data.batch_size * trainer.world_size  # every process's batch
    logging_seconds = outbox.seconds_spent + figures.draw_seconds  # this session's fit
    metrics = {
        "logging_time_s": logging_seconds,
        "train_time_s": seconds,
        "sequences_seen": float(sequences),
        "train_seq_per_s": sequences / max(seconds, 1e-9),
        "restarts": float(setbacks.restarts if setbacks is not None else 0),
        "rollbacks": float(setbacks.rollbacks if setbacks is not None else 0),
    }
    if first_step.seconds is not None:  # the compile, with --compile
        metrics["first_step_s"] = first_step.seconds
    if stopper is not None:
        metrics["reached_stop_at"] = float(stopper.reached_at is not None)
        if stopper.reached_at is not None:
            reached_step, reached_seconds = stopper.reached_at
            metrics["steps_to_stop_at"] = float(reached_step)
            metrics["seconds_to_stop_at"] = reached_seconds
            metrics["sequences_to_stop_at"] = float(
                reached_step * config.data.batch_size * trainer.world_size
            )
    _restore_best(module, checkpoint)
    device = module.device
    # seeded like evaluate, so a model with a random starting memory scores the same there
    best = score_batches(module.model, datamodule.val_batches(), device, seed=config.seed)
    metrics["best_val_bits_per_seq"] = best["bits_per_seq"]
    metrics["best_val_bit_acc"] = best["bit_acc"]
    for length in config.data.test_lengths:
        scores = score_batches(
            module.model, datamodule.test_batches(length), device, seed=config.seed
        )
        metrics[f"bit_acc_L{length}"] = scores["bit_acc"]
        metrics[f"bits_per_seq_L{length}"] = scores["bits_per_seq"]
    outbox.log_metrics(metrics, step=steps)
    figures.log_final(module, steps)
    _log_model(module, config, task, datamodule, run_id)
    return TrainResult(
        run_id,
        best["bits_per_seq"],
        steps,
        seconds,
        metrics,
        param_count=count_parameters(module.model),
    )


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("train", TrainConfig, train, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
