"""Data-parallel training against one process, side by side: NTM copy sequences/s and time to a
validation threshold.

    python -m benchmarks.ddp_throughput --throughput_minutes 1 --max_minutes 3 --threshold 0.1

Runs the train pipeline as a user would (``python -m pipelines.train``), into throw-away
tracking stores: one process (all cores' threads) and ``--devices 2 --strategy ddp`` (one
thread per process), each at the same per-process batch. First each trains for
``--throughput_minutes`` without stopping early (throughput over the same wall-clock), then
each trains until ``--threshold`` val bits/seq or ``--max_minutes`` (time to converge). Reads
back what the runs logged: ``train_seq_per_s`` (training sequences of all processes per second
of training wall-clock, validation included) and ``seconds_to_stop_at`` /
``sequences_to_stop_at``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save

METRICS = (
    "train_seq_per_s",
    "seconds_to_stop_at",
    "sequences_to_stop_at",
    "train_time_s",
    "best_val_bits_per_seq",
    "bit_acc_L40",
)


def run_train(store: Path, argv: list[str]) -> dict[str, float]:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "NTMLAB_HOME": str(store / "home")}
    env.pop("MLFLOW_RUN_ID", None)
    command = [sys.executable, "-m", "pipelines.train", *argv]
    subprocess.run(command, env=env, check=True)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("copy").experiment_id])
    return {name: run.data.metrics.get(name, float("nan")) for name in METRICS}


PLACEMENTS = {
    "single": ["--accelerator", "cpu", "--devices", "1"],
    "ddp": ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
}


def both(base: list[str]) -> dict[str, dict[str, float]]:
    results = {}
    for name, placement in PLACEMENTS.items():
        with tempfile.TemporaryDirectory() as directory:
            results[name] = run_train(Path(directory), [*base, *placement])
        print(name, results[name], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--throughput_minutes", type=float, default=1.0)
    parser.add_argument("--max_minutes", type=float, default=3.0)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args, extra = parser.parse_known_args()
    base = [
        "--model",
        "ntm",
        "--task",
        "copy",
        "--seed",
        str(args.seed),
        "--progress_bar",
        "false",
        "--test_lengths",
        "40",
        *extra,
    ]
    speed = both([*base, "--max_minutes", str(args.throughput_minutes)])
    converge = both(
        [*base, "--max_minutes", str(args.max_minutes), "--stop_at", str(args.threshold)]
    )
    single, ddp = speed["single"]["train_seq_per_s"], speed["ddp"]["train_seq_per_s"]
    ratio = ddp / single
    print(f"machine: {machine()}")
    print(
        f"train_seq_per_s over {args.throughput_minutes} min: single {single:.0f}, "
        f"ddp x2 {ddp:.0f}, ratio {ratio:.2f}"
    )
    for name, scores in converge.items():
        seconds, sequences = scores["seconds_to_stop_at"], scores["sequences_to_stop_at"]
        print(
            f"{name}: {seconds:.1f} s, {sequences:.0f} sequences to val <= {args.threshold} "
            f"({scores['train_seq_per_s']:.0f} sequences/s)"
        )
    save(
        "ddp_throughput",
        {"args": vars(args), "throughput": speed, "convergence": converge, "ratio": ratio},
    )


if __name__ == "__main__":
    main()
