"""The trainings a reproduction draws on, in one wall-clock budget shared by weight.

Each training gets a share by weight, and the time a training leaves unused (an NTM that stops
early) goes to the trainings after it. The copy trainings serve three claims, so they run once,
in the first claim that needs them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipelines.common.config import ConfigError, configured, option
from pipelines.mnist.config import ClassifyConfig
from pipelines.mnist.fit import ClassifyResult, classify
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import TrainResult, train
from pipelines.studies.comparison import ScoreRow
from pipelines.studies.ntm_vs_lstm import NtmVsLstmConfig, child_config, rows_of

# in running order: the copy trainings happen in the first claim that asks for them
CLAIM_NAMES = (
    "ntm_copy",
    "lstm_copy",
    "ntm_vs_lstm",
    "associative_recall",
    "unfolded_depth",
    "cooijmans_mnist",
)
COPY_LENGTHS = (5, 10, 20, 40, 80, 120)  # ntm_keras' 5..80 and Graves et al.'s 120
# relative wall-clock weight of each training
WEIGHTS = {
    "ntm-copy": 4.0,
    "lstm-copy": 40.0,
    "ntm-associative_recall": 16.0,
    "unfolded-10": 4.0,
    "unfolded-30": 8.0,
    "bn_lstm-rows": 14.0,
    "lstm-rows": 4.0,  # the same steps as the BN-LSTM, which an LSTM runs about 4x faster
}
MIN_MINUTES = 1 / 60  # a training past the deadline still runs (briefly) and reports


@dataclass
class ReproduceConfig:
    budget_minutes: float = option(
        90.0,
        "wall-clock for all claims together (the trainings share it by weight)",
        min=0.0,
        exclusive_min=True,
    )
    claims: tuple[str, ...] = option((), "comma-separated claim ids (empty: all; see --help)")
    seed: int = option(0, "seed of every training", min=0)
    test_size: int = option(1000, "sequences per test length", min=1)
    val_size: int = option(1000, "sequences in each fixed validation set", min=1)
    batches_per_epoch: int = option(
        200, "sequence tasks: training batches between validations", min=1
    )
    mnist_train_subset: int | None = option(
        None, "MNIST claims train on the first N images (empty: all 55,000)", min=1, max=55_000
    )
    data_dir: str | None = option(None, "MNIST root with MNIST/raw (empty: $NTMLAB_MNIST_DIR)")
    progress_bar: bool = option(False, "show Lightning's progress bars")
    experiment_name: str = option("reproduce", "MLflow experiment")

    def check(self) -> None:
        unknown = [claim for claim in self.claims if claim not in CLAIM_NAMES]
        if unknown:
            raise ConfigError(
                f"--claims: unknown {', '.join(unknown)}; choose from {', '.join(CLAIM_NAMES)}"
            )


class Budget:
    """One deadline shared by weight; what a training leaves unused goes to the later ones."""

    def __init__(self, minutes: float, weights: dict[str, float]) -> None:
        self.deadline = time.monotonic() + 60.0 * minutes
        self.pending = dict(weights)

    def take(self, name: str) -> float:
        """Minutes for ``name``: its weight's share of the time left (at least a second)."""
        weight = self.pending.pop(name)
        left = max(self.deadline - time.monotonic(), 0.0) / 60.0
        return max(left * weight / (weight + sum(self.pending.values())), MIN_MINUTES)


class Evidence:
    """Trainings several claims draw on run once, nested under the claim that asks first."""

    def __init__(self, config: ReproduceConfig, budget: Budget) -> None:
        self.config, self.budget = config, budget
        self.copy: dict[str, tuple[TrainConfig, TrainResult]] = {}

    def copy_run(self, model: str) -> tuple[TrainConfig, TrainResult]:
        if model not in self.copy:
            shared = NtmVsLstmConfig(
                budget_minutes=self.budget.take(f"{model}-copy"),
                stop_at=0.01,
                seed=self.config.seed,
                test_lengths=COPY_LENGTHS,
                batches_per_epoch=self.config.batches_per_epoch,
                val_size=self.config.val_size,
                test_size=self.config.test_size,
                progress_bar=self.config.progress_bar,
            )
            child = child_config(shared, model, self.config.experiment_name)
            self.copy[model] = child, train(child, nested=True)
        return self.copy[model]

    def copy_rows(self, model: str) -> list[ScoreRow]:
        child, result = self.copy_run(model)
        return rows_of(model, child, result)

    def associative_recall(self) -> tuple[TrainConfig, TrainResult]:
        config = configured(
            TrainConfig,
            {
                **self.shared_sequence_options(),
                "task": "associative_recall",
                "max_minutes": self.budget.take("ntm-associative_recall"),
                "max_steps": 10**9,  # the budget is wall-clock
                "stop_at": 0.1,
            },
        )
        return config, train(config, nested=True)

    def shared_sequence_options(self) -> dict[str, Any]:
        """What every sequence training of the study shares, by option name."""
        config = self.config
        return {
            "seed": config.seed,
            "experiment_name": config.experiment_name,
            "val_size": config.val_size,
            "test_size": config.test_size,
            "batches_per_epoch": config.batches_per_epoch,
            "progress_bar": config.progress_bar,
        }

    def classifier(self, name: str, **options: Any) -> ClassifyResult:
        """A classify run of ``options`` (by option name) in ``name``'s share of the budget."""
        config = self.config
        shared = {
            "max_minutes": self.budget.take(name),
            "epochs": 1000,  # the budget is wall-clock
            "seed": config.seed,
            "train_subset": config.mnist_train_subset,
            "data_dir": config.data_dir,
            "progress_bar": config.progress_bar,
            "experiment_name": config.experiment_name,
        }
        return classify(configured(ClassifyConfig, {**shared, **options}), nested=True)
