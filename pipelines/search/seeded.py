"""Multi-seed trials (``--seeds_per_trial`` above 1): every trial trains the same parameters
on several seeds, each a nested train run stopped at the threshold, and is scored on how many
seeds got there and how soon, so a search cannot rank a recipe by one lucky seed."""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

from pipelines.search.config import HpoConfig
from pipelines.search.pruning import TagTrialState

SEED_TAG = "ntmlab.trial_seed"


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
    the threshold by the train pipeline's ``--stop_at`` (which logs ``steps_to_stop_at`` when
    it got there); ``run_trial(config, callbacks, tags)`` runs one and returns its result."""
    results = []
    for seed in trial_seeds(config):
        seed_config = copy.deepcopy(trial_config)
        seed_config.seed = seed
        seed_config.trainer.stop_at = config.threshold
        state = TagTrialState()
        result = run_trial(seed_config, [state], {**tags, SEED_TAG: str(seed)})
        if not state.validated:
            raise RuntimeError(f"seed {seed} ended before its first validation")
        reached = result.metrics.get("steps_to_stop_at")
        reached_at = None if reached is None else int(reached)
        results.append(SeedResult(seed, result.run_id, result.steps, result.best_score, reached_at))
    return results


def trial_attrs(results: list[SeedResult], max_steps: int) -> tuple[float, dict]:
    """The trial's value and what its user attributes keep of its seeds; ``run_id`` is the
    seed that did best (first to the threshold, then the best validation score): its model
    is registered."""
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
