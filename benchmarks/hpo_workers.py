"""Wall-clock of one fixed study run by one worker and by two worker processes (journal file
storage; the sqlite MLflow store and experiment are created before the workers start, so they
never race on creating them).

    python -m benchmarks.hpo_workers --n_trials 8 --trial_max_steps 200 \\
        --space "num_layers=1,hidden_size=64,max_len=5,batches_per_epoch=50,val_size=200"

Each worker process runs ``python -m pipelines.hpo`` with one intra-op thread
(``OMP_NUM_THREADS=1``), so two workers use the machine's two cores; the single worker gets the
same setting, which is how a study on a 2-core machine is best run anyway.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save

ROOT = Path(__file__).resolve().parents[1]


def run(workers: int, args: argparse.Namespace, directory: Path) -> float:
    uri = f"sqlite:///{directory / f'mlflow-{workers}.db'}"
    MlflowClient(uri).search_experiments()  # create the store before the workers race on it
    MlflowClient(uri).create_experiment("hpo-copy")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1",
           "NTMLAB_HOME": str(directory / f"home-{workers}")}  # fmt: skip
    command = [
        sys.executable, "-m", "pipelines.hpo", "--model", args.model,
        "--n_trials", str(args.n_trials), "--trial_max_steps", str(args.trial_max_steps),
        "--storage", f"journal:///{directory / f'journal-{workers}.log'}", "--pruner", "none",
        "--space", args.space,
    ]  # fmt: skip
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a worker failed with exit code {process.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--n_trials", type=int, default=8)
    parser.add_argument("--trial_max_steps", type=int, default=200)
    parser.add_argument("--space", default="num_layers=1,hidden_size=64,max_len=5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, args, Path(tmp))
        two = run(2, args, Path(tmp))
    print(f"machine: {machine()}")
    print(f"1 worker: {one:.0f} s; 2 workers: {two:.0f} s; speed-up {one / two:.2f}x")
    save("hpo_workers", {"args": vars(args), "one_worker_s": one, "two_workers_s": two})


if __name__ == "__main__":
    main()
