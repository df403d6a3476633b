"""Data-parallel training against one process, side by side: NTM copy sequences/s and time to a
validation threshold.

    python -m benchmarks.ddp_throughput --max_minutes 3 --threshold 0.1

Runs the train pipeline twice as a user would (``python -m pipelines.train``), into a
throw-away tracking store: one process (all cores' threads), then ``--devices 2 --strategy ddp``
(one thread per process), each at the same per-process batch, each stopping at ``--threshold``
val bits/seq or ``--max_minutes``. Reads back what the runs logged: ``train_seq_per_s``
(training sequences of all processes per second of training wall-clock) and
``seconds_to_stop_at`` / ``sequences_to_stop_at``.
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

METRICS = ("train_seq_per_s", "seconds_to_stop_at", "sequences_to_stop_at", "train_time_s",
           "best_val_bits_per_seq", "bit_acc_L40")  # fmt: skip


def run_train(store: Path, argv: list[str]) -> dict[str, float]:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "NTMLAB_HOME": str(store / "home")}
    env.pop("MLFLOW_RUN_ID", None)
    command = [sys.executable, "-m", "pipelines.train", *argv]
    subprocess.run(command, env=env, check=True)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("copy").experiment_id])
    return {name: run.data.metrics.get(name, float("nan")) for name in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max_minutes", type=float, default=3.0)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devices", type=int, default=2)
    args, extra = parser.parse_known_args()
    base = ["--model", "ntm", "--task", "copy", "--seed", str(args.seed), "--max_minutes",
            str(args.max_minutes), "--stop_at", str(args.threshold), "--progress_bar", "false",
            "--test_lengths", "40", *extra]  # fmt: skip
    results = {}
    for name, placement in (
        ("single", ["--accelerator", "cpu", "--devices", "1"]),
        ("ddp", ["--accelerator", "cpu", "--devices", str(args.devices), "--strategy", "ddp"]),
    ):
        with tempfile.TemporaryDirectory() as directory:
            results[name] = run_train(Path(directory), [*base, *placement])
        print(name, results[name], flush=True)
    ratio = results["ddp"]["train_seq_per_s"] / results["single"]["train_seq_per_s"]
    print(f"machine: {machine()}")
    single, ddp = results["single"]["train_seq_per_s"], results["ddp"]["train_seq_per_s"]
    print(f"train_seq_per_s: single {single:.0f}, ddp x{args.devices} {ddp:.0f}, ratio {ratio:.2f}")
    for name, scores in results.items():
        seconds, sequences = scores["seconds_to_stop_at"], scores["sequences_to_stop_at"]
        print(f"{name}: {seconds:.1f} s, {sequences:.0f} sequences to val <= {args.threshold}")
    save("ddp_throughput", {"args": vars(args), "results": results, "ratio": ratio})


if __name__ == "__main__":
    main()
