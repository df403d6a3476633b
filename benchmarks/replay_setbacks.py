"""Replay logged validation curves through the current setback rules, without training.

    MLFLOW_TRACKING_URI=sqlite:///<db> python -m benchmarks.replay_setbacks --run_ids <id> ...

For each finished train run, feeds its ``val_bits_per_seq`` history to the
:class:`pipelines.callbacks.RecoverFromSetbacks` the train pipeline builds from the run's recipe
(or from the ``--task`` recipe and the options given, to try another rule on old curves) and
prints where the rules would roll back or restart, beside where the run logged that it did.
Up to the first step where the two differ, a run trained under the replayed rules takes the
same path step for step (the same seed, the same decisions); after it, the curve is no longer
the one the rules would have produced, so only the first differing decision is a finding.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch
from mlflow.tracking import MlflowClient

from pipelines.config import parse_config
from pipelines.factory import setback_rules
from pipelines.tracking.store import tracking_uri
from pipelines.train import MONITOR
from pipelines.train_config import TrainConfig


class _Weights:
    """A module stand-in: a rollback only needs weights to save and load."""

    def __init__(self) -> None:
        self.model = torch.nn.Linear(1, 1, bias=False)

    def restart_from(self, state: dict) -> None:
        pass

    def roll_back_to(self, state: dict) -> None:
        pass


def replay(curve: list[tuple[int, float]], config: TrainConfig) -> dict[str, list[int]]:
    """The steps at which the rules decide to roll back and to restart on ``curve``."""
    rules = setback_rules(config, MONITOR, fresh_state=lambda restart: {})
    if rules is None:
        return {"rollbacks": [], "restarts": []}
    module = _Weights()
    trainer = SimpleNamespace(sanity_checking=False, world_size=1, logger=None, global_step=0)
    for step, value in curve:
        trainer.global_step = step
        trainer.callback_metrics = {MONITOR: value}
        rules.on_validation_end(trainer, module)
        rules.on_train_batch_start(trainer, module, None, 0)
    return {"rollbacks": rules.rollback_steps, "restarts": rules.restart_steps}


def logged_steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """Steps where a count rose (the final total is logged again at the end)."""
    steps, last = [], 0.0
    for metric in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step):
        if metric.value > last:
            steps.append(metric.step)
            last = metric.value
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run_ids", nargs="+", required=True)
    parser.add_argument("--task", default=None, help="replay this task's recipe instead")
    parser.add_argument("extra", nargs="*", help="train options after -- (e.g. a rule to try)")
    args = parser.parse_args()
    client = MlflowClient(tracking_uri())
    print("| run | seed | replayed rollbacks | logged | replayed restarts | logged |")
    print("|---|---|---|---|---|---|")
    for run_id in args.run_ids:
        params = client.get_run(run_id).data.params
        task = args.task or params["data.task"]
        config = parse_config(TrainConfig, ["--task", task, *args.extra])
        history = client.get_metric_history(run_id, MONITOR)
        curve = sorted((m.step, m.value) for m in history)
        replayed = replay(curve, config)
        logged = {key: logged_steps(client, run_id, key) for key in ("rollbacks", "restarts")}
        seed = params.get("seed", params.get("resolved.seed"))
        print(f"| {run_id[:8]} | {seed} | {replayed['rollbacks']} | {logged['rollbacks']} | "
              f"{replayed['restarts']} | {logged['restarts']} |")  # fmt: skip


if __name__ == "__main__":
    main()
