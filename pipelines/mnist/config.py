"""The classify pipeline's config schema: the one place its parameters and their bounds live."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.classifier_module import LR_SCHEDULES
from pipelines.common.config import ConfigError, option
from pipelines.common.placement import PlacementConfig

CLASSIFIERS = ("unfolded_lstm", "bn_lstm", "lstm", "mlp", "cnn")
SEQUENCE_VIEWS = ("rows", "pixels", "permuted")
PIXEL_VIEWS = ("pixels", "permuted")  # 784 steps: a compile pays off within an epoch
DEPTH_MODELS = ("unfolded_lstm", "mlp")
UNFOLDED_GAMMA_H, UNFOLDED_INPUT_GAIN = 0.1, 1.0


@dataclass
class ClassifyConfig:
    model: str = option("unfolded_lstm", "classifier", choices=CLASSIFIERS)
    view: str | None = option(
        None,
        "input view (empty: flat for unfolded_lstm/mlp, image for cnn, rows otherwise)",
        choices=(None, "flat", "image", *SEQUENCE_VIEWS),
    )
    depth: int = option(10, "cells (unfolded_lstm) or hidden layers (mlp)", min=1)
    hidden_size: int = option(100, "state size / width", min=1)
    tied: bool = option(False, "unfolded_lstm: one weight set for cells 2..depth")
    batch_norm: bool = option(True, "batch normalization (unfolded_lstm, bn_lstm, mlp)")
    dropout: float = option(0.0, "dropout on h (unfolded_lstm) or activations", min=0.0, max=0.9)
    bn_gamma_h: float = option(
        UNFOLDED_GAMMA_H,
        "unfolded_lstm: starting gamma of the hidden-term normalizers "
        "(lower damps the gradient's growth towards the input)",
        min=0.0,
        exclusive_min=True,
    )
    input_init_gain: float = option(
        UNFOLDED_INPUT_GAIN,
        "unfolded_lstm: gain of the first matrix's Xavier init (under "
        "batch norm its gradient scales with 1 / its norm)",
        min=0.0,
        exclusive_min=True,
    )
    lr: float = option(1e-3, "Adam learning rate", min=0.0, exclusive_min=True)
    lr_schedule: str = option(
        "constant",
        "learning rate over training: constant, or cosine decay to 0 by the end",
        choices=LR_SCHEDULES,
    )
    clip_value: float = option(1.0, "gradient norm clipping (0: off)", min=0.0)
    epochs: int = option(10, "training epochs", min=1)
    max_steps: int | None = option(None, "stop after this many steps (empty: epochs decide)", min=1)
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
        None,
        "bn_lstm: train through a compiled (fused) time step (empty: on for the 784-step "
        "views pixels and permuted)",
    )
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
            raise ConfigError(
                "--bn_gamma_h and --input_init_gain apply to --model unfolded_lstm "
                f"only, not {self.model}"
            )
        if self.compile and (self.model != "bn_lstm" or not self.batch_norm):
            raise ConfigError(
                "--compile true: only the bn_lstm (with --batch_norm true) has a compiled step"
            )
