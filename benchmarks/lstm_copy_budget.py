"""How far does the LSTM baseline get on copy in a wall-clock budget? Its learning curve and test.

    python -m benchmarks.lstm_copy_budget --max_minutes 25 --variants "" "--lr_decay_patience 1"

Each variant is a list of extra train options (the empty string: the default recipe, which is
the LSTM child of ``pipelines.experiments``); all train the default LSTM on copy (lengths
1..20) with seed ``--seed`` through the real train pipeline (MLflow experiment
``benchmarks-lstm-budget``) until ``--max_minutes`` run out, and its best checkpoint is scored
on 1,000 sequences at lengths 5, 10, 20, 40, 80 and 120. Printed per variant: val bits/seq and
learning rate every ``--every`` steps (the plateau decay shows up as the lr halving), the best
val, steps, sequences, and bit accuracy at each test length.
"""

from __future__ import annotations

import argparse
import shlex

from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save
from pipelines.config import parse_config
from pipelines.tracking.store import tracking_uri
from pipelines.train import train
from pipelines.train_config import TrainConfig

TEST_LENGTHS = "5,10,20,40,80,120"


def history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {metric.step: metric.value for metric in client.get_metric_history(run_id, key)}


def budget_run(variant: str, args: argparse.Namespace) -> dict:
    argv = [
        "--model", "lstm", "--task", "copy", "--seed", str(args.seed),
        "--max_minutes", str(args.max_minutes), "--max_steps", "1000000000",
        "--test_lengths", TEST_LENGTHS, "--progress_bar", "false",
        "--experiment_name", "benchmarks-lstm-budget", *shlex.split(variant),
    ]  # fmt: skip
    result = train(parse_config(TrainConfig, argv))
    client = MlflowClient(tracking_uri())
    val = history(client, result.run_id, "val_bits_per_seq")
    lr = history(client, result.run_id, "lr")
    sampled = [step for step in sorted(val) if step % args.every == 0] or sorted(val)
    return {
        "variant": variant or "(default)", "run_id": result.run_id, "steps": result.steps,
        "seconds": result.seconds, "metrics": client.get_run(result.run_id).data.metrics,
        "curve": [(step, val[step], lr.get(step, float("nan"))) for step in sampled],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=[""])
    parser.add_argument("--max_minutes", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=2000, help="curve sampling, in steps")
    args = parser.parse_args()
    results = [budget_run(variant, args) for variant in args.variants]
    print(f"machine: {machine()}")
    lengths = TEST_LENGTHS.split(",")
    print("| variant | steps | seconds | sequences | best val bits/seq | "
          + " | ".join(f"acc@{length} %" for length in lengths) + " |")  # fmt: skip
    print("|" + "---|" * (5 + len(lengths)))
    for r in results:
        m = r["metrics"]
        accuracies = " | ".join(f"{100 * m[f'bit_acc_L{length}']:.2f}" for length in lengths)
        print(f"| {r['variant']} | {r['steps']} | {r['seconds']:.0f} | {m['sequences_seen']:.0f} "
              f"| {m['best_val_bits_per_seq']:.3f} | {accuracies} |")  # fmt: skip
    for r in results:
        points = " ".join(f"{step}:{bits:.2f}@{rate:.1e}" for step, bits, rate in r["curve"])
        print(f"curve {r['variant']} (step:val bits/seq@lr): {points}")
    save("lstm_copy_budget", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
