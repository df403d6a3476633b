"""Train one MNIST classifier and record it in MLflow, with the depth diagnostics.

    python -m pipelines.classify --model unfolded_lstm --depth 10 --hidden_size 100 --epochs 10
    python -m pipelines.classify --model bn_lstm --view rows
    python -m pipelines.classify --model mlp --depth 30 --batch_norm true

Models: ``unfolded_lstm`` (an LSTM unrolled through depth on the flat image), ``bn_lstm`` (the
Cooijmans BN-LSTM over rows, pixels or permuted pixels), ``lstm`` (the plain LSTM baseline on
those views), ``mlp`` (same depth and width as the unfolded LSTM, no gating) and ``cnn``.
Logged: params, ``param_count``, loss/accuracy curves, ``grad_norm/layer_<i>``, test accuracy,
``seconds_per_epoch``, a gradient-norm-vs-layer plot at several points of training, the first
layer's input weights as 28x28 filters, and the model weights.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from datamodules.mnist import MNISTDataModule, MNISTUnavailable, make_view
from models.classifier_module import LR_SCHEDULES, ClassifierModule
from models.classifiers import DeepMLP, SequenceLSTMClassifier, SmallCNN
from models.unfolded_lstm import RecurrentBNLSTM, UnfoldedLSTM
from pipelines.callbacks import AgreeOnStop
from pipelines.cli import run_pipeline
from pipelines.config import ConfigError, flatten_params, from_dict, option, to_dict
from pipelines.diagnostics import filters_figure, gradient_norm_figure, gradient_ratio_summary
from pipelines.factory import count_parameters
from pipelines.interrupts import (
    RunInterrupted,
    StopOnSignal,
    deferred,
    interrupt_guard,
    keep_lightning_off_signals,
)
from pipelines.scaling import (
    Placement,
    PlacementConfig,
    is_worker_process,
    placement_of,
    worker_processes,
    worker_run_id,
)
from pipelines.tracking.datasets import mnist_inputs
from pipelines.tracking.logger import RunBoundLogger
from pipelines.tracking.models import log_model, tensor_signature
from pipelines.tracking.runs import tracked_run

CLASSIFIERS = ("unfolded_lstm", "bn_lstm", "lstm", "mlp", "cnn")
SEQUENCE_VIEWS = ("rows", "pixels", "permuted")
PIXEL_VIEWS = ("pixels", "permuted")  # 784 steps: a compile (~30 s) pays off within an epoch
DEPTH_MODELS = ("unfolded_lstm", "mlp")
UNFOLDED_GAMMA_H, UNFOLDED_INPUT_GAIN = 0.1, 1.0


@dataclass
class ClassifyConfig:
    model: str = option("unfolded_lstm", "classifier", choices=CLASSIFIERS)
    view: str | None = option(
        None, "input view (empty: flat for unfolded_lstm/mlp, image for cnn, rows otherwise)",
        choices=(None, "flat", "image", *SEQUENCE_VIEWS),
    )  # fmt: skip
    depth: int = option(10, "cells (unfolded_lstm) or hidden layers (mlp)", min=1)
    hidden_size: int = option(100, "state size / width", min=1)
    tied: bool = option(False, "unfolded_lstm: one weight set for cells 2..depth")
    batch_norm: bool = option(True, "batch normalization (unfolded_lstm, bn_lstm, mlp)")
    dropout: float = option(0.0, "dropout on h (unfolded_lstm) or activations", min=0.0, max=0.9)
    bn_gamma_h: float = option(
        UNFOLDED_GAMMA_H, "unfolded_lstm: starting gamma of the hidden-term normalizers "
        "(lower damps the gradient's growth towards the input)", min=0.0, exclusive_min=True,
    )  # fmt: skip
    input_init_gain: float = option(
        UNFOLDED_INPUT_GAIN, "unfolded_lstm: gain of the first matrix's Xavier init (under "
        "batch norm its gradient scales with 1 / its norm)", min=0.0, exclusive_min=True,
    )  # fmt: skip
    lr: float = option(1e-3, "Adam learning rate", min=0.0, exclusive_min=True)
    lr_schedule: str = option(
        "constant",
        "learning rate over training: constant, or cosine decay to 0 by the end",
        choices=LR_SCHEDULES,
    )
    clip_value: float = option(1.0, "gradient norm clipping (0: off)", min=0.0)
    epochs: int = option(10, "training epochs", min=1)
    max_steps: int | None = option(None, "stop after this many steps (empty: epochs decide)",
                                   min=1)  # fmt: skip
    val_every_n_steps: int | None = option(
        None, "validate every n steps (empty: once per epoch)", min=1
    )
    max_minutes: float = option(60.0, "stop after this many minutes", min=0.0, exclusive_min=True)
    batch_size: int = option(128, "training batch size", min=1)
    train_subset: int | None = option(
        None, "train on the first N images of the split (empty: all 55,000)", min=1, max=55_000
    )
    data_dir: str | None = option(None, "MNIST root with MNIST/raw (empty: $NTMLAB_MNIST_DIR)")
    grad_norm_every: int = option(50, "log per-layer gradient norms every n steps", min=1)
    compile: bool | None = option(
        None, "bn_lstm: train through a compiled (fused) time step (empty: on for the 784-step "
        "views pixels and permuted)",
    )  # fmt: skip
    progress_bar: bool = option(True, "show Lightning's progress bar")
    seed: int = option(0, "seed of weights, split, shuffling and permutation", min=0)
    experiment_name: str | None = option(None, "MLflow experiment (default: mnist)")
    placement: PlacementConfig = field(default_factory=PlacementConfig)

    def resolve(self) -> None:
        if self.view is None:
            self.view = {"unfolded_lstm": "flat", "mlp": "flat", "cnn": "image"}.get(
                self.model, "rows"
            )
        if self.compile is None:
            self.compile = self.model == "bn_lstm" and self.batch_norm and self.view in PIXEL_VIEWS

    def check(self) -> None:
        wanted = {"unfolded_lstm": ("flat",), "mlp": ("flat",), "cnn": ("image",)}
        allowed = wanted.get(self.model, SEQUENCE_VIEWS)
        if self.view not in allowed:
            raise ConfigError(
                f"--view {self.view} does not fit --model {self.model} (use {'/'.join(allowed)})"
            )
        tuned = (self.bn_gamma_h, self.input_init_gain) != (UNFOLDED_GAMMA_H, UNFOLDED_INPUT_GAIN)
        if tuned and self.model != "unfolded_lstm":
            raise ConfigError("--bn_gamma_h and --input_init_gain apply to --model unfolded_lstm "
                              f"only, not {self.model}")  # fmt: skip
        if self.compile and (self.model != "bn_lstm" or not self.batch_norm):
            raise ConfigError("--compile true: only the bn_lstm (with --batch_norm true) has a "
                              "compiled step")  # fmt: skip


def make_classifier(config: ClassifyConfig, input_shape: tuple[int, ...]) -> nn.Module:
    if config.model == "unfolded_lstm":
        return UnfoldedLSTM(784, config.hidden_size, config.depth, tied=config.tied,
                            batch_norm=config.batch_norm, dropout=config.dropout,
                            gamma_h=config.bn_gamma_h,
                            input_init_gain=config.input_init_gain)  # fmt: skip
    if config.model == "mlp":
        return DeepMLP(784, config.hidden_size, config.depth, batch_norm=config.batch_norm,
                       dropout=config.dropout)  # fmt: skip
    if config.model == "cnn":
        return SmallCNN(dropout=config.dropout)
    steps, width = input_shape
    if config.model == "bn_lstm":
        return RecurrentBNLSTM(width, config.hidden_size, steps=steps,
                               batch_norm=config.batch_norm)  # fmt: skip
    return SequenceLSTMClassifier(width, config.hidden_size)


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
) -> ClassifyResult:
    """Fit and test ``config`` in one MLflow run (a child of the active run when ``nested``);
    extra ``callbacks`` (e.g. pruning) join the fit."""
    data = _datamodule(config)
    placement = placement_of(config.placement)
    if is_worker_process():  # another node's first process, started by the user (num_nodes)
        return _classify_as_worker(config, data, worker_run_id(), placement)
    experiment = config.experiment_name or "mnist"
    tags = {"ntmlab.pipeline": "classify", **(tags or {})}
    run_name = f"{config.model}-{config.view}"
    with (
        interrupt_guard(),
        tracked_run(experiment, run_name, tags, nested=nested, system_metrics=True) as run,
    ):
        metrics, steps = _fit(config, data, run.run_id, run.outbox, placement, callbacks)
        run.describe(
            f"{config.model} on MNIST {config.view}: test accuracy "
            f"{100 * metrics['test_acc']:.2f} % after {metrics['epochs_trained']:.2f} epochs "
            f"({int(metrics['param_count']):,} parameters)."
        )
    return ClassifyResult(run.run_id, metrics, steps)


def _datamodule(config: ClassifyConfig) -> MNISTDataModule:
    data = MNISTDataModule(
        config.view,
        data_dir=config.data_dir,
        batch_size=config.batch_size,
        seed=config.seed,
        permutation_seed=config.seed,
        train_subset=config.train_subset,
    )
    try:
        data.setup()
    except MNISTUnavailable as error:
        raise ConfigError(str(error)) from None
    return data


def classify_worker(spec: dict) -> ClassifyResult:
    """The fit of a DDP worker that rank 0 started (:mod:`pipelines.ddp_worker`)."""
    config = from_dict(ClassifyConfig, spec["config"])
    placement = placement_of(config.placement)
    return _classify_as_worker(config, _datamodule(config), spec["run_id"], placement)


def _classify_as_worker(config, data, run_id: str, placement: Placement) -> ClassifyResult:
    """A data-parallel worker (rank > 0): the same fit and test in lockstep with rank 0, which
    alone tracks; an interruption is rank 0's to report."""
    with interrupt_guard():
        try:
            metrics, steps = _fit(config, data, run_id, None, placement, ())
        except RunInterrupted:
            metrics, steps = {}, 0
    return ClassifyResult(run_id, metrics, steps)


def _fit(config, data, run_id, outbox, placement, callbacks) -> tuple[dict[str, float], int]:
    """Fit and test; on rank 0 (``outbox`` given) also log. A DDP worker passes no outbox."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    core = make_classifier(config, data.input_shape)
    if config.compile:
        core.fuse_step()
    module = ClassifierModule(core, config.lr, lr_schedule=config.lr_schedule,
                              clip_value=config.clip_value,
                              grad_norm_every=config.grad_norm_every)  # fmt: skip
    if outbox is not None:
        params = {k: v for k, v in flatten_params(config).items() if v is not None}
        outbox.log_params(params)
        outbox.log_inputs(
            mnist_inputs(data.root, config.view, config.seed, config.train_subset,
                         data.input_shape)
        )  # fmt: skip
        outbox.log_metrics({"param_count": count_parameters(core)}, step=0)
        logger = RunBoundLogger(run_id, outbox)
    else:
        logger = False
    by_steps = config.val_every_n_steps
    started = time.perf_counter()
    # the workers' environment (LOCAL_RANK, ...) must exist before the Trainer reads it
    spec = {"pipeline": "classify", "config": to_dict(config), "run_id": run_id}
    with deferred(), worker_processes(placement, spec):
        trainer = pl.Trainer(
            max_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            val_check_interval=by_steps,
            check_val_every_n_epoch=None if by_steps else 1,
            callbacks=[*callbacks, StopOnSignal(None), AgreeOnStop()],
            max_time=timedelta(minutes=config.max_minutes),
            logger=logger,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=config.progress_bar,
            log_every_n_steps=config.grad_norm_every,
            **placement.trainer_kwargs,
            use_distributed_sampler=False,  # the MNIST datamodule shards by rank itself
        )
        keep_lightning_off_signals(trainer)
        if logger:
            logger.use_steps_of(trainer)
        try:
            trainer.fit(module, datamodule=data)
        except SIGTERMException:
            raise RunInterrupted("SIGTERM") from None
        seconds = time.perf_counter() - started
        tested = trainer.test(module, datamodule=data, verbose=False)[0]
    if outbox is None:
        return {"test_acc": tested["test_acc"]}, trainer.global_step
    epochs = epochs_trained(trainer.global_step, trainer.num_training_batches)
    metrics = {
        "test_acc": tested["test_acc"],
        "test_loss": tested["test_loss"],
        "train_time_s": seconds,
        "seconds_per_epoch": seconds / epochs,
        "epochs_trained": epochs,
    }
    history = module.grad_norm_history
    layer_weights = getattr(core, "layer_weights", lambda: [])()
    metrics.update(gradient_ratio_summary(history, [weight.numel() for weight in layer_weights]))
    outbox.log_metrics(metrics, step=trainer.global_step)
    if history:
        outbox.log_figure(
            gradient_norm_figure(history, config.model), "plots/grad_norm_vs_layer.png"
        )
    if layer_weights and config.view in ("flat", "image"):
        figure = filters_figure(layer_weights[0], config.model)
        outbox.log_figure(figure, "plots/first_layer_filters.png")
    signature = tensor_signature((-1, *data.input_shape), (-1, 10))
    example = data.split("val").tensors[0][:2]
    description = {"config": to_dict(config), "input_shape": list(data.input_shape)}
    log_model(run_id, core, signature, make_view(example, data.view, data.order), description)
    return {**metrics, "param_count": count_parameters(core)}, trainer.global_step


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("classify", ClassifyConfig, classify, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
