"""Comparison tables and accuracy-vs-length plots, shared by the evaluate and experiment
pipelines so every comparison in the MLflow UI reads the same way."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from pipelines.tracking.outbox import TrackingOutbox

METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_. -]")
TABLE_CSV = "evaluation/table.csv"
TABLE_JSON = "evaluation/table.json"
ACCURACY_PLOT = "evaluation/accuracy_vs_length.png"


@dataclass
class ScoreRow:
    """One model's scores on one test set."""

    model: str  # label in tables and plots (the run name)
    model_type: str  # ntm, lstm, ...
    run_id: str
    param_count: int
    task: str
    length: int
    repeats: int | None  # repeat copy only
    label: str  # the test set's name in metric keys, e.g. L40 or L10_R20
    bit_acc: float
    bits_per_seq: float
    train_time_s: float | None = None


def table_csv(rows: Sequence[ScoreRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(ScoreRow)])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return buffer.getvalue()


def summary_markdown(rows: Sequence[ScoreRow]) -> str:
    """A side-by-side table: one column per model, one row per test set (a run description)."""
    models = list(dict.fromkeys(row.model for row in rows))
    by_key = {(row.model, row.label): row for row in rows}
    first = {model: next(row for row in rows if row.model == model) for model in models}
    lines = [
        "| | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
        "| parameters | " + " | ".join(f"{first[m].param_count:,}" for m in models) + " |",
    ]
    if all(first[m].train_time_s is not None for m in models):
        times = " | ".join(f"{first[m].train_time_s:.0f}" for m in models)
        lines.append(f"| train time (s) | {times} |")
    shown = {
        row.label: f"{row.length}" + (f" x {row.repeats}" if row.repeats else "") for row in rows
    }
    for label, where in shown.items():
        cells = [
            f"{100 * by_key[m, label].bit_acc:.2f} % ({by_key[m, label].bits_per_seq:.2f})"
            if (m, label) in by_key
            else ""
            for m in models
        ]
        lines.append(f"| bit acc (bits/seq) at {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def accuracy_figure(rows: Sequence[ScoreRow], title: str) -> Figure:
    """Bit accuracy (%) against test length: one line per model (and repeat count)."""
    figure, axis = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    lines: dict[str, list[ScoreRow]] = {}
    for row in rows:
        name = row.model if row.repeats is None else f"{row.model}, {row.repeats} repeats"
        lines.setdefault(name, []).append(row)
    for name, points in lines.items():
        points = sorted(points, key=lambda row: row.length)
        axis.plot(
            [p.length for p in points], [100 * p.bit_acc for p in points], marker="o", label=name
        )
    axis.axhline(50, color="0.6", linestyle=":", label="chance (50 %)")
    task = rows[0].task if rows else ""
    axis.set_xlabel("items per episode" if task == "associative_recall" else "test length")
    axis.set_ylabel("bit accuracy (%)")
    axis.set_ylim(40, 101)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    axis.set_title(title)
    return figure


def log_comparison(outbox: TrackingOutbox, rows: Sequence[ScoreRow], prefix_models: bool) -> None:
    """Metrics, CSV/JSON table and plot of ``rows`` into a run, through its outbox.

    Metric keys are ``bit_acc_<label>``; with several models each key is prefixed with
    ``<model>/`` so one run can hold them all.
    """
    metrics = {}
    for row in rows:
        # a label such as models:/ntm-copy@champion keeps only what metric names allow
        prefix = f"{METRIC_UNSAFE.sub('_', row.model)}/" if prefix_models else ""
        metrics[f"{prefix}bit_acc_{row.label}"] = row.bit_acc
        metrics[f"{prefix}bits_per_seq_{row.label}"] = row.bits_per_seq
    outbox.log_metrics(metrics, step=0)
    outbox.log_text(table_csv(rows), TABLE_CSV)
    outbox.log_text(json.dumps([asdict(row) for row in rows], indent=2), TABLE_JSON)
    task = rows[0].task if rows else ""
    figure = accuracy_figure(rows, f"{task}: generalization to longer episodes")
    try:
        outbox.log_figure(figure, ACCURACY_PLOT)
    finally:
        plt.close(figure)
