"""Where training runs: accelerator, devices, nodes and strategy, checked before anything starts.

Lightning would reject a bad combination only inside ``fit`` (after the MLflow run opened, as a
traceback); here a throwaway ``Trainer`` is built from the same four values at parse time, so a
mistake is one ``ConfigError`` naming the options. Strategies that pickle the pipeline into
spawned processes (``ddp_spawn``, ``ddp_notebook``, ``ddp_fork``) are refused.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl

from pipelines.common.config import ConfigError, option

SPAWNING_STRATEGIES = ("spawn", "notebook", "fork")
_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning", "lightning_fabric")


def parse_devices(text: str) -> int | str | list[int]:
    """``auto``, a count (``-1``: all), or comma-separated indices (``0,1``), as Lightning takes."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if "," in text:
        try:
            return [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            pass
    return text


@contextmanager
def _quiet_lightning():
    """The probe Trainer's "GPU available" banner is not for the user."""
    levels = {name: logging.getLogger(name).level for name in _LIGHTNING_LOGGERS}
    for name in levels:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


PLACEMENT_OPTIONS = ("accelerator", "devices", "num_nodes", "strategy")


@dataclass
class PlacementConfig:
    """Where a pipeline's trainings run: one config section, ``--accelerator`` ... on the
    command line, ``placement.<name>`` as MLflow params."""

    accelerator: str = option("auto", "Lightning accelerator (cpu, gpu, auto, ...)")
    devices: str = option("auto", "Lightning devices (auto, a count, or a list like 0,1)")
    num_nodes: int = option(1, "nodes for multi-node training", min=1)
    strategy: str = option("auto", "Lightning strategy (auto, ddp, ...)")


@dataclass(frozen=True)
class Placement:
    """Validated ``pl.Trainer`` arguments and the process layout they imply."""

    trainer_kwargs: dict[str, Any]
    processes_per_node: int
    world_size: int


def trainer_placement(accelerator: str, devices: str, num_nodes: int, strategy: str) -> Placement:
    """Validate where to train by building a throwaway Trainer; ConfigError otherwise."""
    if any(word in strategy for word in SPAWNING_STRATEGIES):
        raise ConfigError(
            f"--strategy: {strategy!r} is not supported; use ddp (the pipelines start their "
            "own worker processes)"
        )
    kwargs: dict[str, Any] = {
        "accelerator": accelerator,
        "devices": parse_devices(devices),
        "num_nodes": num_nodes,
        "strategy": strategy,
    }
    try:
        with _quiet_lightning():
            probe = pl.Trainer(
                **kwargs,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
    except Exception as error:  # Lightning raises TypeError, ValueError or its own exception
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        given = (
            f"--accelerator {accelerator} --devices {devices} --num_nodes {num_nodes} "
            f"--strategy {strategy}"
        )
        raise ConfigError(f"{given}: {reason}") from None
    return Placement(kwargs, probe.num_devices, probe.world_size)


def placement_options(section: Any) -> dict[str, Any]:
    """The four placement options of a section by command-line name, to pass on to the config
    of a training that a study or a search starts."""
    return {name: getattr(section, name) for name in PLACEMENT_OPTIONS}


def placement_of(section: Any) -> Placement:
    """The validated placement of a config section with the four fields (a
    :class:`PlacementConfig` or the train pipeline's trainer section)."""
    return trainer_placement(
        section.accelerator, section.devices, section.num_nodes, section.strategy
    )
