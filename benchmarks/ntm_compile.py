"""The compiled (fused) NTM step against the eager one, through the real train pipeline.

    python -m benchmarks.ntm_compile --minutes 1.5 --seeds 0 1 2 3 4

1. Throughput: ``python -m pipelines.train`` on copy with ``--compile false`` and
   ``--compile true``, each for ``--minutes`` of training wall-clock (the compile counts inside
   it, as a user waits for it), side by side, ``train_seq_per_s`` as the runs log it: the
   compiled run first with an empty Inductor cache (cold), then again in a new process that
   finds it (warm). The convergence runs below use the warm cache.
2. Convergence: for each seed, compiled training until val_bits_per_seq <= ``--threshold``
   (0.1), wall-clock to it including the compile.
Extra arguments after ``--`` go to every training run (MLflow experiment ``benchmarks``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save
from pipelines.tracking.store import tracking_uri


def _run(argv: list[str], cache_dir: str) -> dict:
    """One ``python -m pipelines.train`` process (a fresh process, as a user's second run
    would be), with Inductor's on-disk cache in ``cache_dir``."""
    command = [
        sys.executable,
        "-m",
        "pipelines.train",
        *argv,
        "--experiment_name",
        "benchmarks",
        "--progress_bar",
        "false",
    ]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name("benchmarks").experiment_id
    (run,) = client.search_runs(
        [experiment], order_by=["attributes.start_time DESC"], max_results=1
    )
    return {"run_id": run.info.run_id, **run.data.metrics}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=1.5)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--max_minutes", type=float, default=3.0, help="convergence budget")
    args = parser.parse_args(argv)

    base = ["--model", "ntm", "--max_steps", "1000000", "--test_lengths", "20", *extra]
    timed = [*base, "--max_minutes", str(args.minutes)]
    cache = tempfile.mkdtemp(prefix="inductor-cache-")  # cold: an empty cache
    eager = _run([*timed, "--compile", "false"], cache)
    cold = _run([*timed, "--compile", "true"], cache)
    warm = _run([*timed, "--compile", "true"], cache)
    ratio = cold["train_seq_per_s"] / eager["train_seq_per_s"]
    print(
        f"eager {eager['train_seq_per_s']:.0f} seq/s; compiled {cold['train_seq_per_s']:.0f} "
        f"(cold cache), {warm['train_seq_per_s']:.0f} (warm); ratio {ratio:.2f}x / "
        f"{warm['train_seq_per_s'] / eager['train_seq_per_s']:.2f}x; first step (the "
        f"compile) {cold['first_step_s']:.1f} s cold, {warm['first_step_s']:.1f} s warm, "
        f"eager {eager['first_step_s']:.2f} s",
        flush=True,
    )

    seeds = []
    for seed in args.seeds:
        run = _run(
            [
                *base,
                "--compile",
                "true",
                "--seed",
                str(seed),
                "--max_minutes",
                str(args.max_minutes),
                "--stop_at",
                str(args.threshold),
            ],
            cache,
        )
        reached = run.get("reached_stop_at") == 1.0
        seconds = run.get("seconds_to_stop_at")
        seeds.append(
            {
                "seed": seed,
                "reached": reached,
                "seconds": seconds,
                "sequences": run.get("sequences_to_stop_at"),
                "run_id": run["run_id"],
            }
        )
        print(
            f"seed {seed}: {'reached' if reached else 'missed'} {args.threshold} in "
            f"{seconds if seconds is None else round(seconds, 1)} s",
            flush=True,
        )
    times = [s["seconds"] for s in seeds if s["reached"]]
    median = statistics.median(times) if len(times) == len(seeds) and times else None
    print(
        f"{len(times)}/{len(seeds)} seeds reached {args.threshold}; median "
        f"{median if median is None else round(median, 1)} s ({machine()})"
    )
    save(
        "ntm_compile",
        {
            "argv": argv,
            "extra": extra,
            "eager": eager,
            "cold": cold,
            "warm": warm,
            "ratio_cold": ratio,
            "seeds": seeds,
            "median_s": median,
        },
    )


if __name__ == "__main__":
    main()
