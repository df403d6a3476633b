"""The README's pictures, from real runs: the NTM's memory and head weightings on a copy
sequence, and bit accuracy against test length beside an LSTM given the same budget.

    python -m benchmarks.readme_figures --max_minutes 3

Trains the default NTM exactly as ``make run`` does (the ``main`` entry point's settings: copy,
3 minutes on this machine) and the default LSTM for the same wall-clock, both through the real
train pipeline (MLflow experiment ``readme_figures``), then scores each run's logged MLflow
Model on the same seeded test sets and writes ``docs/ntm_memory.png`` and
``docs/accuracy_vs_length.png`` (into ``$NTMLAB_BENCHMARK_OUT/docs`` when that is set, as the
tests do). Extra arguments after ``--`` go to both trainings.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch
from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save, split_train_args
from datamodules.synthetic import make_test_set
from pipelines.common.config import parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.figures import memory_figure
from pipelines.sequence.fit import train
from pipelines.sequence.trained import load_from_run
from pipelines.studies.comparison import accuracy_figure, summary_markdown
from pipelines.studies.evaluate import score_models
from pipelines.tracking.store import PROJECT_ROOT, tracking_uri

MEMORY_EXAMPLE_LENGTH = 20


def out_dir() -> Path:
    override = os.environ.get("NTMLAB_BENCHMARK_OUT")
    return Path(override) / "docs" if override else PROJECT_ROOT / "docs"


def main(argv: list[str] | None = None) -> None:
    argv, extra = split_train_args(argv)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max_minutes", type=float, default=3.0, help="budget of each model")
    parser.add_argument("--test_size", type=int, default=1000, help="sequences per length")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    client = MlflowClient(tracking_uri())
    models = []
    for name in ("ntm", "lstm"):
        config = parse_config(
            TrainConfig,
            [
                "--model",
                name,
                "--seed",
                str(args.seed),
                "--max_minutes",
                str(args.max_minutes),
                "--experiment_name",
                "readme_figures",
                "--progress_bar",
                "false",
                *extra,
            ],
        )
        result = train(config)
        models.append(load_from_run(client, result.run_id))
        models[-1].label = f"{name} ({args.max_minutes:g} min)"
        print(f"{name}: run {result.run_id}, {result.steps} steps", flush=True)

    ntm = models[0]
    task = ntm.task
    lengths = task.default_eval_lengths
    plan = [(task, length) for length in lengths]
    rows = score_models(models, plan, args.test_size, 500, args.seed, torch.device("cpu"))
    target = out_dir()
    target.mkdir(parents=True, exist_ok=True)
    figure = accuracy_figure(
        rows, f"copy: trained on lengths 1..20, {args.max_minutes:g} min each on this machine"
    )
    figure.savefig(target / "accuracy_vs_length.png", dpi=90)
    plt.close(figure)

    (example,) = make_test_set(task, MEMORY_EXAMPLE_LENGTH, 1, 1, args.seed + 1)
    with torch.no_grad():
        _, trace = ntm.core(example.inputs, return_trace=True)
    figure = memory_figure(
        trace,
        f"NTM after make run: copy of a length-{MEMORY_EXAMPLE_LENGTH} "
        "sequence (write, then read back in order)",
    )
    figure.savefig(target / "ntm_memory.png", dpi=70)
    plt.close(figure)

    table = summary_markdown(rows)
    print(table)
    save(
        "readme_figures",
        {
            "argv": argv,
            "extra": extra,
            "run_ids": [m.run_id for m in models],
            "table": table,
            "figures": [str(target / "accuracy_vs_length.png"), str(target / "ntm_memory.png")],
        },
    )
    print(f"figures in {target} ({machine()})")


if __name__ == "__main__":
    main()
