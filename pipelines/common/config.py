"""Typed pipeline configs, their command line, and validation with one clear line per mistake.

A config is a tree of dataclasses. Each leaf field is one command-line option (``--<cli>``, by
default the field name) and one flattened MLflow param (``<section>.<field>``). Field metadata
says what is allowed (``choices``, ``min``, ``max``), so parsing, validation and ``--help`` all
come from the schema, and the MLproject file is checked against it by the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterator
from typing import Any


class ConfigError(ValueError):
    """A user mistake in a pipeline's parameters; the message names the parameter."""


def option(
    default: Any,
    help: str,
    *,
    cli: str | None = None,
    choices: tuple | None = None,
    min: float | None = None,
    max: float | None = None,
    exclusive_min: bool = False,
    models: tuple[str, ...] | None = None,
    tasks: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its command-line name, help text and bounds.

    ``models`` (``tasks``) limits an option to the models (tasks) it applies to, so a run's
    params list only what shaped it.
    """
    metadata = {
        "help": help,
        "cli": cli,
        "choices": choices,
        "min": min,
        "max": max,
        "exclusive_min": exclusive_min,
        "models": models,
        "tasks": tasks,
    }
    if isinstance(default, list | dict | tuple):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# ---------------------------------------------------------------- value parsing


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _parse_int_list(text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _parse_float_list(text: str) -> tuple[float, ...]:
    return tuple(_parse_float(part) for part in text.split(",") if part.strip())


def _parse_str_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _optional(parse):
    """An empty string means "not set" for optional values (MLproject defaults are strings)."""

    def parse_optional(text: str):
        return parse(text) if text.strip() else None

    return parse_optional


def _parser_for(annotation: Any):
    """The text -> value function for a field type."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _optional(_parser_for(inner[0]))
    if annotation is bool:
        return _parse_bool
    if annotation is int:
        return _parse_int
    if annotation is float:
        return _parse_float
    if annotation is str:
        return str
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return {str: _parse_str_list, float: _parse_float_list}.get(item, _parse_int_list)
    raise TypeError(f"no command-line parser for {annotation!r}")


# ---------------------------------------------------------------- schema walking


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One leaf option: where it lives in the tree and how it is spelled on the command line."""

    path: tuple[str, ...]
    field: dataclasses.Field
    annotation: Any

    @property
    def cli(self) -> str:
        return self.field.metadata.get("cli") or self.field.name

    @property
    def param(self) -> str:
        return ".".join(self.path)


def leaves(config_type: type, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every leaf option of a config dataclass, depth first."""
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            yield from leaves(annotation, (*prefix, field.name))
        else:
            yield Leaf((*prefix, field.name), field, annotation)


def _get(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def _set(config: Any, path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        config = getattr(config, name)
    setattr(config, path[-1], value)


class _QuietParser(argparse.ArgumentParser):
    """Raises ConfigError with argparse's one-line message instead of printing the usage."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(message)


def build_parser(config_type: type, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one ``--option`` per leaf, defaults taken from the schema."""
    parser = _QuietParser(description=description, argument_default=argparse.SUPPRESS)
    seen: set[str] = set()
    for leaf in leaves(config_type):
        if leaf.cli in seen:
            raise TypeError(f"two config fields share the command-line name --{leaf.cli}")
        seen.add(leaf.cli)
        meta = leaf.field.metadata
        help_text = meta.get("help", "")
        if meta.get("choices"):
            help_text += f" (one of: {', '.join(map(str, meta['choices']))})"
        parser.add_argument(
            f"--{leaf.cli}",
            dest=leaf.param,
            metavar=leaf.cli.upper(),
            type=_parser_for(leaf.annotation),
            help=help_text,
        )
    return parser


def parse_config(config_type: type, argv: list[str] | None, description: str = "") -> Any:
    """Parse ``argv`` into a validated ``config_type``; raises ConfigError on any mistake."""
    namespace = build_parser(config_type, description).parse_args(argv)
    config = config_type()
    for param, value in vars(namespace).items():
        _set(config, tuple(param.split(".")), value)
    _resolve(config)
    validate(config)
    return config


def update(config: Any, values: dict[str, Any]) -> None:
    """Set options by command-line name (``{"lr": 1e-3}``), then resolve and validate again."""
    paths = {leaf.cli: leaf.path for leaf in leaves(type(config))}
    for name, value in values.items():
        _set(config, paths[name], value)
    _resolve(config)
    validate(config)


def configured(config_type: type, values: dict[str, Any]) -> Any:
    """A new validated ``config_type`` with ``values`` set by command-line name before it
    resolves, exactly as if they had been typed (recipes then fill what is left)."""
    config = config_type()
    update(config, values)
    return config


def _resolve(config: Any) -> None:
    """Let a config fill defaults that depend on other fields (e.g. a model's recipe)."""
    resolve = getattr(config, "resolve", None)
    if callable(resolve):
        resolve()


def validate(config: Any) -> None:
    """Check every leaf against its bounds, then the config's own cross-field ``check()``."""
    for leaf in leaves(type(config)):
        value = _get(config, leaf.path)
        meta = leaf.field.metadata
        name = f"--{leaf.cli}"
        choices = meta.get("choices")
        if choices and value not in choices:
            allowed = ", ".join(map(str, choices))
            raise ConfigError(f"{name}: {value!r} is not allowed; choose one of: {allowed}")
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if not isinstance(item, int | float) or isinstance(item, bool):
                continue
            low, high = meta.get("min"), meta.get("max")
            if low is not None and (item < low or (meta.get("exclusive_min") and item == low)):
                relation = ">" if meta.get("exclusive_min") else ">="
                raise ConfigError(f"{name}: must be {relation} {low}, got {item}")
            if high is not None and item > high:
                raise ConfigError(f"{name}: must be <= {high}, got {item}")
    check = getattr(config, "check", None)
    if callable(check):
        check()


RESOLVED_PREFIX = "resolved."


def param_key(leaf: Leaf) -> str:
    """The MLflow param a leaf is logged under.

    ``mlflow run`` logs every MLproject parameter under its bare name (``model``, ``metric``)
    exactly as the user gave it, empty defaults included, and MLflow refuses to change a
    param. A pipeline therefore never logs a bare name: a leaf in a section is
    ``<section>.<field>`` (``model.hidden_size``); a top-level leaf, whose name is also an
    MLproject parameter, is ``resolved.<field>`` (``resolved.metric``), the value the pipeline
    actually used. The same key holds the same meaning however the pipeline was started.
    """
    return leaf.param if len(leaf.path) > 1 else RESOLVED_PREFIX + leaf.param


def flatten_params(config: Any) -> dict[str, Any]:
    """``{"model.hidden_size": 256, "resolved.seed": 0, ...}`` for MLflow (keys from
    :func:`param_key`), without other models' and tasks' options."""
    model_name = getattr(getattr(config, "model", None), "name", None)
    task_name = getattr(getattr(config, "data", None), "task", None)
    params: dict[str, Any] = {}
    for leaf in leaves(type(config)):
        models, tasks = leaf.field.metadata.get("models"), leaf.field.metadata.get("tasks")
        if (models and model_name not in models) or (tasks and task_name not in tasks):
            continue
        value = _get(config, leaf.path)
        params[param_key(leaf)] = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return params


def model_options(section: Any, model_name: str) -> dict[str, Any]:
    """The fields of a config section tagged (``models=``) as options of ``model_name``."""
    return {
        field.name: getattr(section, field.name)
        for field in dataclasses.fields(section)
        if model_name in (field.metadata.get("models") or ())
    }


def config_argv(config: Any) -> list[str]:
    """``--option value`` for every leaf: a command line that parses back to ``config``
    (a child process gets a parent's config exactly, recipes already filled in)."""
    argv: list[str] = []
    for leaf in leaves(type(config)):
        value = _get(config, leaf.path)
        if isinstance(value, tuple):
            text = ",".join(map(str, value))
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = "" if value is None else repr(value) if isinstance(value, float) else str(value)
        argv += [f"--{leaf.cli}", text]
    return argv


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(config_type: type, data: dict[str, Any]) -> Any:
    """Rebuild a config from :func:`to_dict` output; unknown keys are an error."""
    config = config_type()
    known = {leaf.param: leaf for leaf in leaves(config_type)}

    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            path = (*prefix, key)
            if isinstance(value, dict):
                walk(value, path)
                continue
            param = ".".join(path)
            if param not in known:
                raise ConfigError(f"unknown config key {param!r}")
            if isinstance(value, list):
                value = tuple(value)
            _set(config, path, value)

    walk(data, ())
    _resolve(config)
    validate(config)
    return config


REGISTERED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_registered_name(name: str | None, option_name: str) -> None:
    """A registered model name that works in a ``models:/<name>@<alias>`` URI."""
    if name is not None and not REGISTERED_NAME.fullmatch(name):
        raise ConfigError(
            f"{option_name}: {name!r} is not a usable model name (letters, digits, '_', '.', '-'; "
            "starting with a letter or digit; at most 100 characters)"
        )
