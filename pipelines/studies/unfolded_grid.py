"""The unfolded_grid pipeline's library: the grid's cells as classify configs, each a nested
run, and the summary tables in the parent. What the command does: :mod:`pipelines.unfolded_grid`
(its ``--help``).
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
from dataclasses import dataclass, field

from pipelines.common.config import ConfigError, flatten_params, option
from pipelines.common.placement import PlacementConfig, placement_of
from pipelines.mnist.fit import ClassifyConfig, classify
from pipelines.tracking.runs import tracked_run

METRIC_COLUMNS = (
    "test_acc",
    "train_time_s",
    "seconds_per_epoch",
    "grad_norm_ratio_first_last",
    "grad_norm_ratio_first_last_median",
    "grad_rms_ratio_first_last_median",
)
SUMMARY_COLUMNS = ("dropout", "tied", "depth", "hidden_size", *METRIC_COLUMNS, "run_id")


@dataclass
class UnfoldedGridConfig:
    epochs: int = option(10, "training epochs of every cell", min=1)
    depths: tuple[int, ...] = option((10, 20, 30), "comma-separated depths", min=1)
    hidden_sizes: tuple[int, ...] = option((100, 200, 300), "comma-separated state sizes", min=1)
    dropouts: tuple[float, ...] = option(
        (0.0, 0.5), "comma-separated dropout rates", min=0.0, max=0.9
    )
    tied: tuple[str, ...] = option(("false", "true"), "comma-separated: false, true")
    batch_norm: bool = option(True, "batch normalization in every cell")
    lr: float = option(1e-3, "Adam learning rate", min=0.0, exclusive_min=True)
    batch_size: int = option(128, "training batch size", min=1)
    train_subset: int | None = option(
        None, "train on the first N images (empty: all)", min=1, max=55_000
    )
    max_minutes: float = option(60.0, "time limit per cell", min=0.0, exclusive_min=True)
    data_dir: str | None = option(None, "MNIST root (empty: $NTMLAB_MNIST_DIR)")
    progress_bar: bool = option(True, "show Lightning's progress bar")
    seed: int = option(0, "seed of every cell", min=0)
    experiment_name: str | None = option(None, "MLflow experiment (default: unfolded_grid)")
    placement: PlacementConfig = field(default_factory=PlacementConfig)  # every cell's training

    def check(self) -> None:
        wrong = [value for value in self.tied if value not in ("false", "true")]
        if wrong or not self.tied:
            raise ConfigError(f"--tied: give false, true or both, got {','.join(self.tied)!r}")
        for name in ("depths", "hidden_sizes", "dropouts"):
            if not getattr(self, name):
                raise ConfigError(f"--{name}: give at least one value")


def cells(config: UnfoldedGridConfig) -> list[ClassifyConfig]:
    """One classify config per (dropout, tied, depth, hidden size), validated up front."""
    result = []
    for dropout, tied, depth, hidden in itertools.product(
        config.dropouts, config.tied, config.depths, config.hidden_sizes
    ):
        cell = ClassifyConfig(
            model="unfolded_lstm",
            view="flat",
            depth=depth,
            hidden_size=hidden,
            tied=tied == "true",
            batch_norm=config.batch_norm,
            dropout=dropout,
            lr=config.lr,
            epochs=config.epochs,
            max_minutes=config.max_minutes,
            batch_size=config.batch_size,
            train_subset=config.train_subset,
            data_dir=config.data_dir,
            progress_bar=config.progress_bar,
            seed=config.seed,
            placement=copy.copy(config.placement),
        )
        cell.check()
        result.append(cell)
    return result


def summary_tables(rows: list[dict]) -> tuple[str, str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    lines = [
        "| dropout | tied | depth | state | test acc % | train s | s/epoch | grad ratio "
        "(median over training) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row.get("grad_norm_ratio_first_last_median")
        lines.append(
            f"| {row['dropout']} | {row['tied']} | {row['depth']} | {row['hidden_size']} | "
            f"{100 * row['test_acc']:.2f} | {row['train_time_s']:.0f} | "
            f"{row['seconds_per_epoch']:.1f} | {'' if ratio is None else f'{ratio:.2f}'} |"
        )
    return buffer.getvalue(), "\n".join(lines) + "\n"


def unfolded_grid(config: UnfoldedGridConfig) -> list[dict]:
    placement_of(config.placement)  # a bad placement fails before anything starts
    grid = cells(config)
    experiment = config.experiment_name or "unfolded_grid"
    with tracked_run(experiment, "unfolded_grid", {"ntmlab.pipeline": "unfolded_grid"}) as run:
        outbox = run.outbox
        outbox.log_params({k: v for k, v in flatten_params(config).items() if v is not None})
        outbox.log_metrics({"cells": len(grid)}, step=0)
        rows = []
        for cell in grid:
            cell.experiment_name = experiment
            result = classify(cell, nested=True)
            rows.append(
                {
                    "dropout": cell.dropout,
                    "tied": cell.tied,
                    "depth": cell.depth,
                    "hidden_size": cell.hidden_size,
                    "run_id": result.run_id,
                    **{key: result.metrics.get(key) for key in METRIC_COLUMNS},
                }
            )
        table_csv, table_md = summary_tables(rows)
        outbox.log_text(table_csv, "grid/summary.csv")
        outbox.log_text(table_md, "grid/summary.md")
        run.report("unfolded_grid", table_md)
    return rows
