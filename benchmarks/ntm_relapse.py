"""Does the NTM stay converged on copy? The validation curve past convergence, per recipe.

    python -m benchmarks.ntm_relapse --max_steps 2400 --variants "" "--adam_eps 1e-6" \\
        "--lr_decay_patience 1"

Each variant is a list of extra train options (the empty string: the default recipe); all run
seed 0 through the real train pipeline (MLflow experiment ``benchmarks-relapse``) for
``--max_steps`` steps, validating every 200. Printed per variant: the step where
val_bits_per_seq first reached 0.1, the worst value after that (the relapse) and the last.
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


def curve(variant: str, args: argparse.Namespace) -> dict:
    argv = [
        "--model", "ntm", "--task", "copy", "--seed", str(args.seed),
        "--max_steps", str(args.max_steps), "--max_minutes", "60", "--progress_bar", "false",
        "--experiment_name", "benchmarks-relapse", *shlex.split(variant),
    ]  # fmt: skip
    result = train(parse_config(TrainConfig, argv))
    history = MlflowClient(tracking_uri()).get_metric_history(result.run_id, "val_bits_per_seq")
    points = sorted((m.step, m.value) for m in history)
    converged = next((step for step, value in points if value <= 0.1), None)
    after = [value for step, value in points if converged is not None and step > converged]
    return {"variant": variant or "(default)", "run_id": result.run_id, "curve": points,
            "converged_at": converged, "worst_after": max(after, default=None),
            "last": points[-1][1] if points else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=[""])
    parser.add_argument("--max_steps", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = [curve(variant, args) for variant in args.variants]
    print(f"machine: {machine()}")
    print("| variant | first <= 0.1 at step | worst after | last | curve (step:bits) |")
    print("|---|---|---|---|---|")
    for r in results:
        worst = "-" if r["worst_after"] is None else f"{r['worst_after']:.2f}"
        points = " ".join(f"{step}:{value:.2f}" for step, value in r["curve"])
        print(f"| {r['variant']} | {r['converged_at']} | {worst} | {r['last']:.2f} | {points} |")
    save("ntm_relapse", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
