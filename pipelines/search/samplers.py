"""Samplers seeded per trial, and pruners that wait for the first validation."""

from __future__ import annotations

import hashlib

import optuna

from pipelines.search.config import HpoConfig


def trial_seed(seed: int, number: int) -> int:
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class _TrialSeeded:
    """Reseeds a sampler's random draws from ``(seed, trial number)`` before every trial.

    A resumed study or a second worker therefore never replays the first trials' random
    (startup) parameters, and a single-worker study stays reproducible trial by trial.
    """

    def before_trial(self, study, trial) -> None:
        seed = trial_seed(self._base_seed, trial.number)
        self._rng.rng.seed(seed)
        inner = getattr(self, "_random_sampler", None)
        if inner is not None:
            inner._rng.rng.seed(seed + 1)
        super().before_trial(study, trial)


class TrialSeededTPE(_TrialSeeded, optuna.samplers.TPESampler):
    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self._base_seed = seed


class TrialSeededRandom(_TrialSeeded, optuna.samplers.RandomSampler):
    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self._base_seed = seed


def make_sampler(config: HpoConfig) -> optuna.samplers.BaseSampler:
    if config.sampler == "random":
        return TrialSeededRandom(config.sampler_seed)
    return TrialSeededTPE(config.sampler_seed)


def make_pruner(config: HpoConfig, first_validation: int) -> optuna.pruners.BasePruner:
    if config.pruner == "median":
        # skip the first validation: every trial looks alike before it has learned anything
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=first_validation)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=first_validation, max_resource=config.trial_max_steps
        )
    return optuna.pruners.NopPruner()
