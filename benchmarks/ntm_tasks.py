"""NTM on repeat copy and associative recall: episodes and time to a threshold, then the test
lengths of the task.

    python -m benchmarks.ntm_tasks --task associative_recall --threshold 0.1 --episodes 100000
    python -m benchmarks.ntm_tasks --task repeat_copy --threshold 0.5 --max_minutes 30

Trains through the real train pipeline (MLflow experiment ``benchmarks``) with the default NTM
until val_bits_per_seq <= ``--threshold`` on the fixed 1,000-episode validation set of the
training distribution, or until ``--episodes`` (= steps x batch size) or ``--max_minutes`` run
out; the best checkpoint is then scored on 1,000 episodes at each of the task's test lengths
(associative recall 6 and 12 items; repeat copy lengths 10 and 20 with training repeats). With
``--train_past`` every seed trains its whole budget, and the episodes to the threshold are read
off its validation curve (its seconds are then the whole run's). Extra train options go after
``--``.
"""

from __future__ import annotations

import argparse

from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save
from datamodules.tasks import TASKS
from pipelines.common.config import parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import MONITOR, train
from pipelines.tracking.store import tracking_uri


def run(task: str, seed: int, args: argparse.Namespace) -> dict:
    config = parse_config(TrainConfig, ["--task", task, *args.extra])
    steps = max(1, args.episodes // config.data.batch_size)
    argv = [
        "--model",
        "ntm",
        "--task",
        task,
        "--seed",
        str(seed),
        "--max_minutes",
        str(args.max_minutes),
        "--max_steps",
        str(steps),
        "--experiment_name",
        "benchmarks",
        *args.extra,
    ]
    if not args.train_past:
        argv += ["--stop_at", str(args.threshold)]
    result = train(parse_config(TrainConfig, argv))
    client = MlflowClient(tracking_uri())
    metrics = client.get_run(result.run_id).data.metrics
    if args.train_past:  # when the threshold was first met, read off the validation curve
        curve = sorted((m.step, m.value) for m in client.get_metric_history(result.run_id, MONITOR))
        first = next((step for step, value in curve if value <= args.threshold), None)
        metrics["reached_stop_at"] = float(first is not None)
        if first is not None:
            metrics["sequences_to_stop_at"] = float(first * config.data.batch_size)
    return {"task": task, "seed": seed, "run_id": result.run_id, "argv": argv, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--max_minutes", type=float, default=30.0)
    parser.add_argument(
        "--train_past",
        action="store_true",
        help="train the whole budget (generalization improves past the threshold); episodes "
        "to the threshold are read off the validation curve",
    )
    parser.add_argument("extra", nargs="*", help="train options after --")
    args = parser.parse_args()

    results = [run(args.task, seed, args) for seed in args.seeds]
    print(f"machine: {machine()}")
    labels = sorted(key[len("bit_acc_") :] for key in results[0] if key.startswith("bit_acc_"))
    header = " | ".join(f"acc@{label} % | bits@{label}" for label in labels)
    print(
        f"| task | seed | reached | seconds | episodes | best val bits/seq | restarts | "
        f"rollbacks | {header} |"
    )
    print("|" + "---|" * (8 + 2 * len(labels)))
    for r in results:
        reached = r.get("reached_stop_at") == 1.0
        seconds = r.get("seconds_to_stop_at", r["train_time_s"])  # with --train_past: the run's
        episodes = r.get("sequences_to_stop_at", r["sequences_seen"])
        cells = " | ".join(
            f"{100 * r[f'bit_acc_{label}']:.2f} | {r[f'bits_per_seq_{label}']:.3f}"
            for label in labels
        )
        print(
            f"| {r['task']} | {r['seed']} | {'yes' if reached else 'no'} | {seconds:.0f} | "
            f"{episodes:.0f} | {r['best_val_bits_per_seq']:.3f} | {r['restarts']:.0f} | "
            f"{r['rollbacks']:.0f} | {cells} |"
        )
    seeds = "-".join(map(str, args.seeds))  # seed lists run side by side keep their own file
    save(f"ntm_{args.task}_seeds{seeds}", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
