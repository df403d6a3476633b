"""Trained sequence models read back from any source, for evaluation and comparison.

A source is a train run id, a ``runs:/`` or ``models:/`` URI, a checkpoint file, or a run an
older version logged (``model/weights.pt`` + ``model/config.json``). Each is rebuilt from the
description it was saved with (:func:`describe`): the train config and the task's widths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn

from datamodules.tasks import SyntheticTask
from pipelines.common.config import ConfigError, from_dict, to_dict
from pipelines.sequence.build import count_parameters, make_core, make_task
from pipelines.sequence.config import TrainConfig
from pipelines.tracking.checkpoints import CheckpointError, load_checkpoint
from pipelines.tracking.models import (
    MODEL_NAME,
    has_logged_model,
    legacy_model_files,
    load_logged_model,
    logged_description,
)

CHECKPOINT_DESCRIPTION_KEY = "ntmlab_model"  # where a train checkpoint describes its model


@dataclass
class TrainedModel:
    """A rebuilt core with what it was trained on; ``label`` names it in tables and plots."""

    label: str
    source: str  # run id, model URI or checkpoint path
    run_id: str | None
    config: TrainConfig
    task: SyntheticTask
    core: nn.Module

    @property
    def param_count(self) -> int:
        return count_parameters(self.core)


def describe(config: TrainConfig, task: SyntheticTask) -> dict[str, Any]:
    """What rebuilding a core needs: the train config and the task's widths."""
    return {
        "config": to_dict(config),
        "input_width": task.input_width,
        "output_width": task.output_width,
    }


def _rebuild_config(description: dict[str, Any], origin: str) -> tuple[TrainConfig, SyntheticTask]:
    try:
        config = from_dict(TrainConfig, description["config"])
    except (KeyError, TypeError, ConfigError) as error:
        raise ConfigError(f"{origin}: its model description is unusable ({error})") from None
    config.resume_run_id = None
    return config, make_task(config.data)


def _rebuild(description: dict[str, Any], state: dict[str, torch.Tensor], origin: str):
    config, task = _rebuild_config(description, origin)
    core = make_core(config.model, description["input_width"], description["output_width"])
    try:
        core.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(
            f"{origin}: weights do not fit the described model ({first})"
        ) from None
    core.eval()
    return config, task, core


def _run_name(client: MlflowClient, run_id: str) -> str | None:
    return client.get_run(run_id).data.tags.get("mlflow.runName")


def load_model_uri(uri: str, client: MlflowClient) -> TrainedModel:
    """A sequence model logged as an MLflow Model (``runs:/<id>/model``, ``models:/<name>@<alias>``,
    ``models:/<name>/<version>``); ``ConfigError`` if there is none."""
    description, run_id = logged_description(uri, client)
    if "input_width" not in description:
        raise ConfigError(f"{uri} is not a sequence model of this project")
    config, task = _rebuild_config(description, uri)
    core = load_logged_model(uri)
    label = f"{config.model.name}-{run_id[:8]}" if run_id else uri
    if run_id:
        label = _run_name(client, run_id) or label
    if uri.startswith("models:/"):
        label = uri.removeprefix("models:/")
    return TrainedModel(label, uri, run_id, config, task, core)


def load_from_run(client: MlflowClient, run_id: str) -> TrainedModel:
    """The model of train run ``run_id``: its MLflow Model, or the ``model/`` files an older
    version logged; ``ConfigError`` if there is neither."""
    try:
        logged = has_logged_model(client, run_id)
    except MlflowException:
        raise ConfigError(f"--run_ids: no run {run_id!r} in this tracking store") from None
    if logged:
        return load_model_uri(f"runs:/{run_id}/{MODEL_NAME}", client)
    description, state = legacy_model_files(client, run_id)
    config, task, core = _rebuild(description, state, f"run {run_id}")
    label = _run_name(client, run_id) or f"{config.model.name}-{run_id[:8]}"
    return TrainedModel(label, run_id, run_id, config, task, core)


def load_from_checkpoint(path: str) -> TrainedModel:
    """The model in a train checkpoint (``best.ckpt``/``last.ckpt``)."""
    checkpoint = load_checkpoint(path)  # CheckpointError when missing, truncated or foreign
    description = checkpoint.get(CHECKPOINT_DESCRIPTION_KEY)
    if not isinstance(description, dict):
        raise CheckpointError(
            f"checkpoint {path} does not describe its model (written by another program?)"
        )
    prefix = "model."
    state = {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    config, task, core = _rebuild(description, state, f"checkpoint {path}")
    label = f"{config.model.name}-{Path(path).stem}"
    return TrainedModel(label, str(path), None, config, task, core)


def load_trained(source: str, client: MlflowClient) -> TrainedModel:
    """A model URI (``runs:/``, ``models:/``) or a train run id."""
    if source.startswith(("runs:/", "models:/")):
        return load_model_uri(source, client)
    return load_from_run(client, source)
