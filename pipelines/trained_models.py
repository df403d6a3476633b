"""Trained models read back for evaluation: from an MLflow run's ``model/`` or a checkpoint.

A train run logs ``model/weights.pt`` (the core's state dict) and ``model/config.json`` (the
train config and the task's widths); its checkpoints carry the same description under
:data:`CHECKPOINT_DESCRIPTION_KEY`. Either is enough to rebuild the exact core and task.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn

from datamodules.synthetic import SyntheticTask
from pipelines.checkpointing import CheckpointError, load_checkpoint
from pipelines.config import ConfigError, from_dict, to_dict
from pipelines.factory import count_parameters, make_core, make_task
from pipelines.train_config import TrainConfig

MODEL_ARTIFACT_DIR = "model"
CHECKPOINT_DESCRIPTION_KEY = "ntmlab_model"


@dataclass
class TrainedModel:
    """A rebuilt core with what it was trained on; ``label`` names it in tables and plots."""

    label: str
    source: str  # run id or checkpoint path
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


def _rebuild(description: dict[str, Any], state: dict[str, torch.Tensor], origin: str):
    try:
        config = from_dict(TrainConfig, description["config"])
    except (KeyError, TypeError, ConfigError) as error:
        raise ConfigError(f"{origin}: its model description is unusable ({error})") from None
    config.resume_run_id = None
    task = make_task(config.data)
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


def load_from_run(client: MlflowClient, run_id: str) -> TrainedModel:
    """The model logged by train run ``run_id``; ``ConfigError`` if there is none."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--run_ids: no run {run_id!r} in this tracking store") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, MODEL_ARTIFACT_DIR, tmp))
            description = json.loads((local / "config.json").read_text())
        except (MlflowException, OSError):
            raise ConfigError(
                f"--run_ids: run {run_id} has no {MODEL_ARTIFACT_DIR}/ artifacts (only a train "
                "run that finished logs its model; resume an interrupted one first)"
            ) from None
        try:
            state = torch.load(local / "weights.pt", map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as error:
            raise CheckpointError(
                f"run {run_id}: model/weights.pt is unreadable ({error})"
            ) from None
    config, task, core = _rebuild(description, state, f"run {run_id}")
    label = run.data.tags.get("mlflow.runName") or f"{config.model.name}-{run_id[:8]}"
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
