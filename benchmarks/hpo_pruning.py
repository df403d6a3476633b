"""Training steps saved by pruning: the same study (sampler seed, trials, budget) run with the
median pruner and without pruning.

    python -m benchmarks.hpo_pruning --model ntm --n_trials 20 --trial_max_steps 2000
    python -m benchmarks.hpo_pruning --model lstm --n_trials 20 --trial_max_steps 300 \\
        --space "num_layers=1,max_len=5,batches_per_epoch=50,val_size=200"

Each study gets its own sqlite storage under a temp dir and runs in this process through the
real hpo pipeline; the figure is ``total_train_steps`` (the sum of every trial's steps).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna

from benchmarks.common import machine, save
from pipelines.common.config import parse_config
from pipelines.search.study import HpoConfig, hpo


def run_study(args: argparse.Namespace, pruner: str, directory: Path) -> dict:
    argv = [
        "--model",
        args.model,
        "--task",
        args.task,
        "--n_trials",
        str(args.n_trials),
        "--trial_max_steps",
        str(args.trial_max_steps),
        "--pruner",
        pruner,
        "--storage",
        f"sqlite:///{directory / f'{pruner}.db'}",
        "--study_name",
        pruner,
        "--space",
        args.space,
        "--experiment_name",
        f"bench-hpo-{pruner}",
    ]
    started = time.perf_counter()
    study = hpo(parse_config(HpoConfig, argv))
    seconds = time.perf_counter() - started
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    return {
        "pruner": pruner,
        "steps": sum(t.user_attrs.get("steps", 0) for t in trials),
        "seconds": seconds,
        "best_value": study.best_value,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ntm")
    parser.add_argument("--task", default="copy")
    parser.add_argument("--n_trials", type=int, default=20)
    parser.add_argument("--trial_max_steps", type=int, default=2000)
    parser.add_argument("--space", default="")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_study(args, pruner, Path(tmp)) for pruner in ("median", "none")]
    median, none = results
    saving = 1 - median["steps"] / none["steps"]
    print(f"machine: {machine()}")
    print("| pruner | trials complete / pruned | total steps | seconds | best value |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['pruner']} | {r['complete']} / {r['pruned']} | {r['steps']} | "
            f"{r['seconds']:.0f} | {r['best_value']:.3f} |"
        )
    print(f"steps saved by pruning: {100 * saving:.1f} %")
    save(f"hpo_pruning_{args.model}", {"args": vars(args), "results": results, "saving": saving})


if __name__ == "__main__":
    main()
