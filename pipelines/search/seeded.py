"""Multi-seed trials (``--seeds_per_trial`` above 1): every trial trains the same parameters
on several seeds, each a nested train run stopped at the threshold, and is scored on how many
seeds got there and how soon, so a search cannot rank a recipe by one lucky seed."""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

import pytorch_lightning as pl

from pipelines.search.config import HpoConfig
from pipelines.search.pruning import TRIAL_STATE_TAG

SEED_TAG = "ntmlab.trial_seed"
REACHED_TAG = "ntmlab.reached_threshold_at_step"  # empty: the seed missed the threshold


class ThresholdWatch(pl.Callback):
    """The best value of a (minimized) validation metric and the first global step at which it
    reached ``threshold``; tags the seed's run with both through its outbox (rank 0)."""

    def __init__(self, metric: str, threshold: float) -> None:
        self.metric, self.threshold = metric, threshold
        self.best: float | None = None
        self.reached_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = float(trainer.callback_metrics[self.metric])
        self.best = value if self.best is None else min(self.best, value)
        if self.reached_at is None and value <= self.threshold:
            self.reached_at = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        outbox = getattr(trainer.logger, "outbox", None)
        if outbox is not None:
            state = "COMPLETE" if self.best is not None else "FAIL"
            reached = "" if self.reached_at is None else str(self.reached_at)
            outbox.set_tags({TRIAL_STATE_TAG: state, REACHED_TAG: reached})


@dataclass(frozen=True)
class SeedResult:
    seed: int
    run_id: str
    steps: int
    best: float
    reached_at: int | None


def seeds_score(reached_at: list[int | None], max_steps: int) -> float:
    """Seeds that missed the threshold, plus the median fraction of ``max_steps`` the others
    took to reach it: success rate first, then speed, in one number to minimize. A trial with
    no seed at the threshold scores ``len(reached_at) + 1``, worse than any that has one."""
    steps = [step for step in reached_at if step is not None]
    missed = len(reached_at) - len(steps)
    if not steps:
        return float(missed + 1)
    return missed + min(1.0, statistics.median(steps) / max_steps)


def trial_seeds(config: HpoConfig) -> range:
    return range(config.seed, config.seed + config.seeds_per_trial)


def run_seeds(config: HpoConfig, trial_config, tags: dict[str, str], run_trial) -> list[SeedResult]:
    """Train ``trial_config`` on every seed of the trial, one after another, each stopped at
    the threshold; ``run_trial(config, callbacks, tags) -> (run id, steps)`` runs one."""
    results = []
    for seed in trial_seeds(config):
        seed_config = copy.deepcopy(trial_config)
        seed_config.seed = seed
        seed_config.trainer.stop_at = config.threshold
        watch = ThresholdWatch(config.metric, config.threshold)
        run_id, steps = run_trial(seed_config, [watch], {**tags, SEED_TAG: str(seed)})
        if watch.best is None:
            raise RuntimeError(f"seed {seed} ended before its first validation")
        results.append(SeedResult(seed, run_id, steps, watch.best, watch.reached_at))
    return results


def trial_attrs(results: list[SeedResult], max_steps: int) -> tuple[float, dict]:
    """The trial's value and what its user attributes keep of its seeds; ``run_id`` is the
    seed that did best (first to the threshold, then lowest value): its model is registered."""
    reached = [result.reached_at for result in results]
    steps_or_budget = [max_steps + 1 if step is None else step for step in reached]
    order = sorted(range(len(results)), key=lambda i: (steps_or_budget[i], results[i].best))
    attrs = {
        "run_id": results[order[0]].run_id,
        "seed_run_ids": [result.run_id for result in results],
        "seeds": [result.seed for result in results],
        "reached_threshold_at": reached,
        "seeds_reached": sum(step is not None for step in reached),
        "steps": sum(result.steps for result in results),
    }
    return seeds_score(reached, max_steps), attrs
