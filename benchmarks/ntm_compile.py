"""The compiled (fused) NTM step against the eager one, through the real train pipeline.

    python -m benchmarks.ntm_compile --minutes 1.5 --seeds 0 1 2 3 4

1. Throughput: ``python -m pipelines.train`` on copy with ``--compile false`` and
   ``--compile true``, each for ``--minutes`` of training wall-clock (the compile counts inside
   it, as a user waits for it), side by side, ``train_seq_per_s`` as the runs log it: the
   compiled run first with an empty Inductor cache (cold), then again in a new process that
   finds it (warm). The convergence runs below use the warm cache.
2. Pipeline against bare loop: the same eager and compiled steps in the bare loop of
   ``benchmarks.ntm_iteration`` (``--bare_iterations``, a fresh process each, the warm cache),
   run right before and right after each pipeline run, and the pipeline's share of their mean
   (whole fit, and its training batches alone), with where the pipeline's time went (the runs'
   ``train_steps_time_s``, ``validation_time_s``, ``checkpoint_time_s``, ``logging_time_s``).
3. Convergence: for each seed, compiled training until val_bits_per_seq <= ``--threshold``
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

from benchmarks.common import machine, save, split_train_args
from benchmarks.ntm_iteration import run_child
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


TIME_PARTS = ("train_steps_time_s", "validation_time_s", "checkpoint_time_s", "logging_time_s")


def _against_bare(name: str, run: dict, bares: list[dict]) -> dict:
    """The pipeline run's seq/s as a share of the mean of the bare loops around it, the same
    for its training batches alone, and its time split."""
    bare = statistics.mean(b["seq_per_s"] for b in bares)
    share = run["train_seq_per_s"] / bare
    split = {part: run[part] / run["train_time_s"] for part in TIME_PARTS if part in run}
    # the training batches' own rate: how much of the gap lies inside Lightning's step
    steps_share = share / split["train_steps_time_s"]
    rest = 1 - sum(value for part, value in split.items() if part != "logging_time_s")
    print(
        f"{name}: pipeline {run['train_seq_per_s']:.0f} seq/s = {100 * share:.0f} % of the bare "
        f"loop's {bare:.0f} (before {bares[0]['seq_per_s']:.0f}, after "
        f"{bares[1]['seq_per_s']:.0f}); its training batches alone {100 * steps_share:.0f} %; "
        "of the fit's time "
        + ", ".join(f"{part.removesuffix('_time_s')} {100 * v:.1f} %" for part, v in split.items())
        + f", the rest (Lightning's loop, figures) {100 * rest:.1f} %",
        flush=True,
    )
    return {"share_of_bare": share, "steps_share": steps_share, "bare": bares, "split": split}


def main(argv: list[str] | None = None) -> None:
    argv, extra = split_train_args(argv)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=1.5)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--max_minutes", type=float, default=3.0, help="convergence budget")
    parser.add_argument("--bare_iterations", type=int, default=150, help="0: no bare loop")
    args = parser.parse_args(argv)

    base = ["--model", "ntm", "--max_steps", "1000000", "--test_lengths", "20", *extra]
    timed = [*base, "--max_minutes", str(args.minutes)]
    cache = tempfile.mkdtemp(prefix="inductor-cache-")  # cold: an empty cache
    env = {"TORCHINDUCTOR_CACHE_DIR": cache}

    def bare(variant: str) -> dict | None:
        return run_child(variant, args.bare_iterations, env=env) if args.bare_iterations else None

    # each pipeline run between two bare loops of its step: this machine's speed drifts by
    # 10-20 % from minute to minute, so one bare loop before or after would be a coin toss
    bare_runs = {"eager": [bare("eager")]}
    eager = _run([*timed, "--compile", "false"], cache)
    bare_runs["eager"].append(bare("eager"))
    cold = _run([*timed, "--compile", "true"], cache)
    bare_runs["warm"] = [bare("compiled")]  # the cold run filled the cache
    warm = _run([*timed, "--compile", "true"], cache)
    bare_runs["warm"].append(bare("compiled"))
    ratio = cold["train_seq_per_s"] / eager["train_seq_per_s"]
    print(
        f"eager {eager['train_seq_per_s']:.0f} seq/s; compiled {cold['train_seq_per_s']:.0f} "
        f"(cold cache), {warm['train_seq_per_s']:.0f} (warm); ratio {ratio:.2f}x / "
        f"{warm['train_seq_per_s'] / eager['train_seq_per_s']:.2f}x; first step (the "
        f"compile) {cold['first_step_s']:.1f} s cold, {warm['first_step_s']:.1f} s warm, "
        f"eager {eager['first_step_s']:.2f} s",
        flush=True,
    )

    against_bare = {}
    if args.bare_iterations:
        for name, run in (("eager", eager), ("warm", warm)):
            against_bare[name] = _against_bare(name, run, bare_runs[name])

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
            "against_bare": against_bare,
            "seeds": seeds,
            "median_s": median,
        },
    )


if __name__ == "__main__":
    main()
