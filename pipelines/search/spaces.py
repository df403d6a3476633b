"""Hyperparameter search spaces: one declaration per model, and command-line narrowing.

A space maps a train option (its ``--`` name) to a :class:`Range`, :class:`Choice` or
:class:`Fixed`. ``--space "lr=1e-4:3e-3,controller=lstm|dense,batch_size=32"`` narrows a range,
restricts the choices or fixes a value; any other train option can be fixed the same way
(e.g. ``max_len=10``). Everything is checked against the train schema before a study is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from pipelines.common.config import ConfigError, build_parser, leaves
from pipelines.sequence.config import TrainConfig


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        return f"{self.low:g}..{self.high:g}" + (" (log)" if self.log else "")

    def extremes(self) -> tuple:
        """The values that must each be valid for the whole distribution to be."""
        return (self.low, self.high)


@dataclass(frozen=True)
class Choice:
    values: tuple

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def describe(self) -> str:
        return " | ".join(map(str, self.values))

    def extremes(self) -> tuple:
        return self.values


@dataclass(frozen=True)
class Fixed:
    value: Any

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return self.value

    def describe(self) -> str:
        return f"fixed {self.value}"

    def extremes(self) -> tuple:
        return (self.value,)


Space = dict[str, Range | Choice | Fixed]

# The ranges bracket the recipes (pipelines/sequence/recipes.py) by about 10x.
SPACES: dict[str, Space] = {
    "ntm": {
        "lr": Range(3e-4, 1e-2, log=True),
        "batch_size": Choice((16, 32, 64)),
        "controller": Choice(("lstm", "dense", "double_dense")),
        "controller_size": Range(32, 256, log=True, integer=True),
        "memory_slots": Choice((64, 128)),
        "memory_width": Choice((10, 20, 32)),
        "read_heads": Range(1, 2, integer=True),
        "write_heads": Range(1, 2, integer=True),
        "clip_value": Range(1.0, 50.0, log=True),
        "memory_init": Choice(("constant", "learned", "random")),
    },
    "lstm": {
        "lr": Range(1e-4, 1e-2, log=True),
        "num_layers": Range(1, 3, integer=True),
        "hidden_size": Choice((64, 128, 256, 512)),
        # the recipe's 1 trains copy faster than PyTorch's ~0 (docs/results-log.md)
        "forget_bias": Choice((0.0, 1.0, 2.0)),
    },
    # MNIST classifiers (the classify pipeline)
    "unfolded_lstm": {
        "depth": Choice((10, 20, 30)),
        "hidden_size": Choice((100, 200, 300)),
        "dropout": Range(0.0, 0.5),
        "tied": Choice((False, True)),
        "lr": Range(1e-4, 1e-2, log=True),
    },
    "bn_lstm": {"hidden_size": Choice((100, 200)), "lr": Range(1e-4, 1e-2, log=True)},
    "mnist_lstm": {"hidden_size": Choice((100, 200)), "lr": Range(1e-4, 1e-2, log=True)},
    "mlp": {
        "depth": Range(2, 30, integer=True),
        "hidden_size": Choice((100, 200, 300)),
        "dropout": Range(0.0, 0.5),
        "lr": Range(1e-4, 1e-2, log=True),
    },
    "cnn": {"dropout": Range(0.0, 0.5), "lr": Range(1e-4, 1e-2, log=True)},
}


def _option_parsers(schema: type) -> dict[str, Callable[[str], Any]]:
    """Command-line name -> the function that turns its text into a value (from the schema)."""
    parser = build_parser(schema, "")
    by_param = {action.dest: action.type for action in parser._actions if action.option_strings}
    return {leaf.cli: by_param[leaf.param] for leaf in leaves(schema)}


def _parse_value(name: str, text: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(text)
    except Exception as error:  # argparse type functions raise ArgumentTypeError/ValueError
        raise ConfigError(f"--space: {name}={text!r}: {error}") from None


def parse_overrides(text: str) -> dict[str, str]:
    """``"a=1:2,b=x|y"`` -> ``{"a": "1:2", "b": "x|y"}``; malformed items are errors."""
    overrides: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--space: {item!r} is not name=value, name=low:high or name=a|b")
        overrides[name.strip()] = value.strip()
    return overrides


def build_space(space_name: str, overrides_text: str, schema: type = TrainConfig) -> Space:
    """The named space with the command-line overrides applied and checked against the
    options of ``schema`` (the pipeline every trial runs)."""
    space: Space = dict(SPACES[space_name])
    parsers = _option_parsers(schema)
    for name, value in parse_overrides(overrides_text).items():
        if name not in parsers:
            raise ConfigError(f"--space: {name!r} is not an option of the trial pipeline")
        parse = parsers[name]
        if name in ("model", "task", "seed", "experiment_name", "resume_run_id"):
            raise ConfigError(f"--space: {name} is set by the study itself, not searched")
        base = space.get(name)
        if ":" in value:
            low_text, _, high_text = value.partition(":")
            low, high = _parse_value(name, low_text, parse), _parse_value(name, high_text, parse)
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
                raise ConfigError(f"--space: {name} is not numeric, so it takes no low:high range")
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ConfigError(f"--space: {name}={value} is an empty range (low > high)")
            log = base.log if isinstance(base, Range) else False
            if log and low <= 0:
                raise ConfigError(f"--space: {name} is searched on a log scale; low must be > 0")
            space[name] = Range(low, high, log, integer=isinstance(low, int))
        elif "|" in value:
            choices = tuple(_parse_value(name, part, parse) for part in value.split("|") if part)
            if not choices:
                raise ConfigError(f"--space: {name}={value} has no choices")
            space[name] = Choice(choices)
        else:
            space[name] = Fixed(_parse_value(name, value, parse))
    return space
