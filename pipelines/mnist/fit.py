"""The classify pipeline's library: fit and test one MNIST classifier in a tracked MLflow run,
with the depth diagnostics (per-layer gradient norms, their first/last ratios, first-layer
filters), through the shared skeleton (:mod:`pipelines.common.fit`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl

from datamodules.mnist import MNISTDataModule, make_view
from models.classifier_module import ClassifierModule
from pipelines.common.config import flatten_params, from_dict, to_dict
from pipelines.common.ddp import worker_spec
from pipelines.common.fit import fit_in_lockstep, run_as_worker, run_fit, run_logger
from pipelines.common.placement import Placement, placement_of
from pipelines.mnist.build import make_classifier, make_datamodule
from pipelines.mnist.config import ClassifyConfig
from pipelines.mnist.diagnostics import (
    filters_figure,
    gradient_norm_figure,
    gradient_ratio_summary,
)
from pipelines.sequence.build import count_parameters
from pipelines.tracking.datasets import mnist_inputs
from pipelines.tracking.models import log_model, tensor_signature
from pipelines.tracking.outbox import TrackingOutbox
from pipelines.tracking.runs import TrackedRun

PIPELINE = "classify"
WORKER_ENTRY = f"{__name__}:fit_as_worker"


@dataclass
class ClassifyResult:
    run_id: str
    metrics: dict[str, float]
    steps: int


def epochs_trained(steps: int, batches_per_epoch: int | float) -> float:
    """Epochs as a fraction, so a run cut short by ``max_minutes`` reports a true s/epoch."""
    if not batches_per_epoch or batches_per_epoch == float("inf"):
        return 1.0
    return max(steps / batches_per_epoch, 1e-9)


def classify(
    config: ClassifyConfig,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    callbacks: Sequence[pl.Callback] = (),
    failure_tags: dict[str, str] | None = None,
) -> ClassifyResult:
    """Fit and test ``config`` in one MLflow run (a child of the active run when ``nested``);
    extra ``callbacks`` (e.g. pruning) join the fit; ``failure_tags`` label a failed run."""
    data = make_datamodule(config)
    placement = placement_of(config.placement)
    return run_fit(
        PIPELINE,
        config.experiment_name or "mnist",
        f"{config.model}-{config.view}",
        primary=lambda run: _classify_in(run, config, data, placement, callbacks),
        worker=lambda run_id: _fit_as_worker(config, data, run_id, placement),
        tags=tags,
        nested=nested,
        failure_tags=failure_tags,
    )


def fit_as_worker(spec: dict[str, Any]) -> None:
    """The fit of a DDP worker that rank 0 started (``python -m pipelines.ddp_worker``)."""
    config = from_dict(ClassifyConfig, spec["config"])
    placement = placement_of(config.placement)
    _fit_as_worker(config, make_datamodule(config), spec["run_id"], placement)


def _fit_as_worker(config, data, run_id: str, placement: Placement) -> ClassifyResult:
    """A data-parallel worker (rank > 0): the same fit and test in lockstep with rank 0."""
    fitted = run_as_worker(lambda: _fit(config, data, run_id, None, placement, ()))
    metrics, steps = fitted or ({}, 0)
    return ClassifyResult(run_id, metrics, steps)


def _classify_in(run: TrackedRun, config, data, placement, callbacks) -> ClassifyResult:
    metrics, steps = _fit(config, data, run.run_id, run.outbox, placement, callbacks)
    run.describe(
        f"{config.model} on MNIST {config.view}: test accuracy "
        f"{100 * metrics['test_acc']:.2f} % after {metrics['epochs_trained']:.2f} epochs "
        f"({int(metrics['param_count']):,} parameters)."
    )
    return ClassifyResult(run.run_id, metrics, steps)


def trainer_args(config: ClassifyConfig) -> dict[str, Any]:
    """The ``pl.Trainer`` arguments of a classifier fit (placement and callbacks come apart)."""
    by_steps = config.val_every_n_steps
    return {
        "max_epochs": config.epochs,
        "max_steps": config.max_steps or -1,
        "val_check_interval": by_steps,
        "check_val_every_n_epoch": None if by_steps else 1,
        "max_time": timedelta(minutes=config.max_minutes),
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": config.progress_bar,
        "log_every_n_steps": config.grad_norm_every,
        "use_distributed_sampler": False,  # the MNIST datamodule shards by rank itself
    }


def _record_start(config, data: MNISTDataModule, core, outbox: TrackingOutbox) -> None:
    params = {k: v for k, v in flatten_params(config).items() if v is not None}
    outbox.log_params(params)
    outbox.log_inputs(
        mnist_inputs(data.root, config.view, config.seed, config.train_subset, data.input_shape)
    )
    outbox.log_metrics({"param_count": count_parameters(core)}, step=0)


def _fit(config, data, run_id, outbox, placement, callbacks) -> tuple[dict[str, float], int]:
    """Fit and test; on rank 0 (``outbox`` given) also log. A DDP worker passes no outbox."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    core = make_classifier(config, data.input_shape)
    if config.compile:
        core.fuse_step()
    module = ClassifierModule(
        core,
        config.lr,
        lr_schedule=config.lr_schedule,
        clip_value=config.clip_value,
        grad_norm_every=config.grad_norm_every,
    )
    if outbox is not None:
        _record_start(config, data, core, outbox)
    fitted = fit_in_lockstep(
        module,
        data,
        placement,
        worker_spec(WORKER_ENTRY, to_dict(config), run_id),
        trainer_args(config),
        callbacks,
        logger=run_logger(run_id, outbox),
        then=lambda trainer: trainer.test(module, datamodule=data, verbose=False)[0],
    )
    trainer, tested = fitted.trainer, fitted.then
    if outbox is None:
        return {"test_acc": tested["test_acc"]}, trainer.global_step
    epochs = epochs_trained(trainer.global_step, trainer.num_training_batches)
    metrics = {
        "test_acc": tested["test_acc"],
        "test_loss": tested["test_loss"],
        "train_time_s": fitted.seconds,
        "seconds_per_epoch": fitted.seconds / epochs,
        "epochs_trained": epochs,
    }
    metrics.update(_log_diagnostics(config, core, module, outbox))
    outbox.log_metrics(metrics, step=trainer.global_step)
    outbox.flush(force=True)  # the scores in the store first: the model links those at its step
    _log_model(config, data, core, run_id, trainer.global_step)
    return {**metrics, "param_count": count_parameters(core)}, trainer.global_step


def _log_diagnostics(config, core, module, outbox: TrackingOutbox) -> dict[str, float]:
    """Gradient ratios first/last layer, the gradient-norm-vs-layer plot, first-layer filters."""
    history = module.grad_norm_history
    layer_weights = getattr(core, "layer_weights", lambda: [])()
    ratios = gradient_ratio_summary(history, [weight.numel() for weight in layer_weights])
    if history:
        figure = gradient_norm_figure(history, config.model)
        outbox.log_figure(figure, "plots/grad_norm_vs_layer.png")
    if layer_weights and config.view in ("flat", "image"):
        figure = filters_figure(layer_weights[0], config.model)
        outbox.log_figure(figure, "plots/first_layer_filters.png")
    return ratios


def _log_model(config, data: MNISTDataModule, core, run_id: str, step: int) -> None:
    """The core as the run's MLflow Model: images in the view's shape -> 10 logits."""
    signature = tensor_signature((-1, *data.input_shape), (-1, 10))
    example = make_view(data.split("val").tensors[0][:2], data.view, data.order)
    description = {"config": to_dict(config), "input_shape": list(data.input_shape)}
    log_model(run_id, core, signature, example, description, step)
