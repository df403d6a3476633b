"""What a seed study measured, read back from its seeds' train runs: one row per seed, the
study's metrics, its tables and its figure."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

SUMMARY_CSV = "seeds/summary.csv"
SUMMARY_MD = "seeds/summary.md"
SUMMARY_FIGURE = "seeds/curves.png"
CURVE = "val_bits_per_seq"


@dataclass
class SeedRow:
    """One seed of a study: how its run ended, when it reached the threshold, its scores."""

    seed: int
    run_id: str | None
    status: str  # the run's status, or MISSING for a seed that has no run
    reached: bool = False
    episodes: int | None = None  # training sequences until the first validation at threshold
    seconds: float | None = None  # wall clock from the run's start to that validation
    final_bits: float | None = None  # the last validation's bits/seq
    bit_acc: dict[str, float] = field(default_factory=dict)  # test label -> the model's score
    best_step: int | None = None  # the step of the checkpoint the run logged as its model


def _curve(client: MlflowClient, run_id: str) -> list[tuple[int, float, int]]:
    """``(step, val_bits_per_seq, timestamp ms)`` of every validation, in step order."""
    history = client.get_metric_history(run_id, CURVE)
    return sorted((point.step, point.value, point.timestamp) for point in history)


def seed_row(
    client: MlflowClient, seed: int, run: Run | None, threshold: float, labels: Sequence[str]
) -> SeedRow:
    """A seed's row. Only a FINISHED run counts as reaching the threshold: a seed whose run
    crashed is a failed seed, whatever its curve did before."""
    if run is None:
        return SeedRow(seed, None, "MISSING")
    info, metrics = run.info, run.data.metrics
    row = SeedRow(seed, info.run_id, info.status)
    curve = _curve(client, info.run_id)
    if curve:
        row.final_bits = curve[-1][1]
    if info.status != "FINISHED":
        return row
    row.bit_acc = {
        label: metrics[f"bit_acc_{label}"] for label in labels if f"bit_acc_{label}" in metrics
    }
    if "best_step" in metrics:
        row.best_step = int(metrics["best_step"])
    batch = int(run.data.params["data.batch_size"])  # every train run logs it, resolved
    for step, value, timestamp in curve:
        if value <= threshold:
            row.reached, row.episodes = True, step * batch
            row.seconds = (timestamp - info.start_time) / 1000
            break
    return row


def summary_metrics(rows: Sequence[SeedRow], labels: Sequence[str]) -> dict[str, float]:
    """The study's metrics. Episodes and seconds are over the seeds that reached the
    threshold (``success_rate`` says how many); accuracies over the finished seeds."""
    reached = [row for row in rows if row.reached]
    metrics = {"success_rate": len(reached) / max(len(rows), 1), "seeds_reached": len(reached)}
    metrics["seeds"] = len(rows)
    if reached:
        episodes = np.array([row.episodes for row in reached], dtype=float)
        metrics["median_episodes_to_threshold"] = float(np.median(episodes))
        metrics["p90_episodes_to_threshold"] = float(np.percentile(episodes, 90))
        seconds = [row.seconds for row in reached]
        metrics["median_seconds_to_threshold"] = float(np.median(seconds))
    for label in labels:
        scores = [row.bit_acc[label] for row in rows if label in row.bit_acc]
        if scores:
            metrics[f"median_bit_acc_{label}"] = float(np.median(scores))
            metrics[f"min_bit_acc_{label}"] = float(np.min(scores))
    return metrics


def _cells(row: SeedRow, labels: Sequence[str]) -> list[str]:
    episodes = f"{row.episodes:,}" if row.episodes is not None else ""
    seconds = f"{row.seconds:.0f}" if row.seconds is not None else ""
    final = f"{row.final_bits:.3f}" if row.final_bits is not None else ""
    best = str(row.best_step) if row.best_step is not None else ""
    accuracy = [
        f"{100 * row.bit_acc[label]:.2f}" if label in row.bit_acc else "" for label in labels
    ]
    reached = "yes" if row.reached else "no"
    return [str(row.seed), row.status, reached, episodes, seconds, final, best, *accuracy]


def _header(labels: Sequence[str]) -> list[str]:
    columns = ["seed", "status", "reached", "episodes", "seconds", "final bits/seq", "model step"]
    return columns + [f"bit acc {label} %" for label in labels]


def summary_csv(rows: Sequence[SeedRow], labels: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run_id", *_header(labels)])
    for row in rows:
        writer.writerow([row.run_id or "", *_cells(row, labels)])
    return buffer.getvalue()


def summary_markdown(rows: Sequence[SeedRow], labels: Sequence[str], threshold: float) -> str:
    """The study's description: the success rate, then one row per seed."""
    metrics = summary_metrics(rows, labels)
    reached = int(metrics["seeds_reached"])
    line = f"{reached}/{len(rows)} seeds reached {threshold:g} bits/seq"
    if reached:
        line += (
            f"; episodes to it: median {metrics['median_episodes_to_threshold']:,.0f}, "
            f"p90 {metrics['p90_episodes_to_threshold']:,.0f}; seconds: median "
            f"{metrics['median_seconds_to_threshold']:.0f}"
        )
    header = _header(labels)
    lines = [line + ".", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(row, labels)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def seeds_figure(
    client: MlflowClient, rows: Sequence[SeedRow], labels: Sequence[str], threshold: float
) -> Figure:
    """Every seed's validation curve on one log axis with the threshold, and every seed's
    accuracy at each test length."""
    figure, (curves, accuracy) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        if row.run_id is None:
            continue
        curve = _curve(client, row.run_id)
        if curve:
            steps, values, _ = zip(*curve, strict=True)
            curves.plot(steps, np.maximum(values, 1e-3), label=f"seed {row.seed}", linewidth=1)
        if row.bit_acc:
            shown = [label for label in labels if label in row.bit_acc]
            accuracy.plot(shown, [100 * row.bit_acc[label] for label in shown], marker="o")
    line = max(threshold, 1e-3)  # the log axis' floor
    curves.axhline(line, color="black", linestyle="--", linewidth=1, label="threshold")
    curves.set(yscale="log", xlabel="step", ylabel="val bits/seq (floor 0.001)")
    curves.set_title("validation curves")
    curves.legend(fontsize=7, ncol=2)
    accuracy.set(xlabel="test set", ylabel="bit accuracy (%)", title="the kept model per seed")
    figure.tight_layout()
    return figure
