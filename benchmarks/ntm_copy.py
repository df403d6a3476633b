"""NTM copy-task convergence and generalization, 3 seeds, against an LSTM with the same budget.

    python -m benchmarks.ntm_copy --seeds 0 1 2 --max_minutes 10

Each seed trains the default NTM through the real train pipeline (MLflow experiment
``benchmarks``) until val_bits_per_seq <= ``--threshold`` (default 0.1) on the fixed
1,000-sequence validation set (lengths 1..20) or the budget runs out; then its best checkpoint
is tested on 1,000 sequences at lengths 20, 40, 80 and 120. The LSTM baseline trains for
the NTM's median wall-clock. Extra arguments after ``--`` go to both trainings
(e.g. ``-- --lr 3e-3``).

``--full_budget`` trains every seed for its whole budget, as ``mlflow run .`` does, and scores
the checkpoint the run selected; that measures which checkpoint the selection keeps:

    python -m benchmarks.ntm_copy --seeds 0 1 2 3 4 5 6 7 8 9 --full_budget --no_lstm \
        --name copy_selection -- --max_steps 2800 --max_minutes 30 --progress_bar false
"""

from __future__ import annotations

import argparse
import statistics
import sys

from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save
from pipelines.common.config import parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from pipelines.tracking.store import tracking_uri

TEST_LENGTHS = (20, 40, 80, 120)
THRESHOLD = 0.1


def run(model: str, seed: int, minutes: float, extra: list[str], stop: float | None) -> dict:
    argv = [
        "--model",
        model,
        "--seed",
        str(seed),
        "--max_minutes",
        str(minutes),
        "--max_steps",
        "1000000",
        "--val_size",
        "1000",
        "--test_size",
        "1000",
        "--test_lengths",
        ",".join(map(str, TEST_LENGTHS)),
        "--experiment_name",
        "benchmarks",
        *extra,
    ]
    if stop is not None:
        argv += ["--stop_at", str(stop)]
    result = train(parse_config(TrainConfig, argv))
    metrics = MlflowClient(tracking_uri()).get_run(result.run_id).data.metrics
    return {"model": model, "seed": seed, "run_id": result.run_id, "argv": argv, **metrics}


def _row(result: dict) -> str:
    converged = result.get("reached_stop_at", 0.0) == 1.0
    seconds = result.get("seconds_to_stop_at", result["train_time_s"])
    sequences = result.get("sequences_to_stop_at", result["sequences_seen"])
    accuracy = " | ".join(f"{100 * result[f'bit_acc_L{n}']:.2f}" for n in TEST_LENGTHS)
    bits = " | ".join(f"{result[f'bits_per_seq_L{n}']:.2f}" for n in TEST_LENGTHS)
    return (
        f"| {result['model']} | {result['seed']} | {'yes' if converged else 'no'} | "
        f"{seconds:.0f} | {sequences:.0f} | {result['best_val_bits_per_seq']:.3f} | "
        f"{result.get('restarts', 0):.0f} | {result.get('rollbacks', 0):.0f} | "
        f"{result.get('best_step', float('nan')):.0f} | {accuracy} | {bits} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max_minutes", type=float, default=10.0)
    parser.add_argument("--no_lstm", action="store_true")
    parser.add_argument(
        "--full_budget", action="store_true", help="no early stop: train the whole budget"
    )
    parser.add_argument(
        "--threshold", type=float, default=THRESHOLD, help="val bits/seq that counts as converged"
    )
    parser.add_argument(
        "--name", default=None, help="benchmarks/out/<name>.json (default: ntm_copy_<threshold>)"
    )
    parser.add_argument("extra", nargs="*", help="train options after --")
    args = parser.parse_args()

    stop = None if args.full_budget else args.threshold
    results = [run("ntm", seed, args.max_minutes, args.extra, stop=stop) for seed in args.seeds]
    budget = statistics.median(r.get("seconds_to_stop_at", r["train_time_s"]) for r in results)
    if not args.no_lstm:
        results.append(run("lstm", args.seeds[0], budget / 60, args.extra, stop=None))

    lengths = " | ".join(f"acc@{n} %" for n in TEST_LENGTHS)
    bits = " | ".join(f"bits@{n}" for n in TEST_LENGTHS)
    print(f"machine: {machine()}")
    header = (
        "| model | seed | converged | seconds | sequences | best val bits/seq | restarts | "
        "rollbacks | selected step |"
    )
    print(f"{header} {lengths} | {bits} |")
    print("|" + "---|" * (9 + 2 * len(TEST_LENGTHS)))
    for result in results:
        print(_row(result))
    ntm = [r for r in results if r["model"] == "ntm"]
    converged = [r for r in ntm if r.get("reached_stop_at") == 1.0]
    if converged:
        print(
            f"median seconds to converge: {budget:.0f}; median sequences: "
            f"{statistics.median(r['sequences_to_stop_at'] for r in converged):.0f}; "
            f"converged seeds: {len(converged)}/{len(ntm)}"
        )
    name = args.name or f"ntm_copy_{args.threshold}"
    save(name, {"threshold": args.threshold, "argv": sys.argv[1:], "results": results})


if __name__ == "__main__":
    main()
