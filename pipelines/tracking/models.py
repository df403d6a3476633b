"""Trained models as MLflow Models, and read back from any source for evaluation.

A train or classify run logs its core with ``mlflow.pytorch.log_model``: pickled, with this
project's ``models/`` package shipped beside it (``code_paths``), a tensor signature, an input
example, and the description that rebuilds it (config, widths) as metadata. So
``mlflow.pytorch.load_model("runs:/<id>/model")`` works in any environment with torch and
MLflow, without this checkout. Evaluation reads a run id, ``runs:/...`` or ``models:/...`` URI,
a checkpoint, or a run an older version logged (``model/weights.pt`` + ``model/config.json``).
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec
from torch import nn

from datamodules.synthetic import SyntheticTask
from pipelines.config import ConfigError, from_dict, to_dict
from pipelines.factory import count_parameters, make_core, make_task
from pipelines.tracking.checkpoints import CheckpointError, load_checkpoint
from pipelines.tracking.store import PROJECT_ROOT, tracking_uri
from pipelines.train_config import TrainConfig

MODEL_NAME = "model"  # runs:/<run id>/model
LEGACY_WEIGHTS = "model/weights.pt"
CHECKPOINT_DESCRIPTION_KEY = "ntmlab_model"
METADATA_KEY = "ntmlab"
MODELS_PACKAGE = PROJECT_ROOT / "models"
LOG_MODEL_PATIENCE_S = 120.0


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


def tensor_signature(input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> ModelSignature:
    """float32 tensors in and out; -1 marks a free dimension (batch, sequence length)."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), input_shape)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), output_shape)]),
    )


def log_model(
    run_id: str,
    core: nn.Module,
    signature: ModelSignature,
    input_example: torch.Tensor,
    description: dict[str, Any],
    patience_s: float = LOG_MODEL_PATIENCE_S,
) -> str:
    """Log ``core`` as the run's MLflow Model (``runs:/<run_id>/model``); return its URI.

    A CPU copy in eval mode is pickled, so a model trained on a GPU loads anywhere. A store
    that does not answer is retried with backoff for ``patience_s`` (the run's other logging
    waits in its outbox meanwhile), then the error is raised and the run ends FAILED.
    """
    model = copy.deepcopy(core).cpu().eval()
    example = input_example.detach().cpu().numpy().astype(np.float32)
    mlflow.set_tracking_uri(tracking_uri())  # the same store the pipeline's client writes to
    deadline, delay = time.monotonic() + patience_s, 1.0
    while True:
        try:
            # created here, in the run's experiment: MLflow would otherwise put it in the
            # experiment of its process-wide fluent state (the default one)
            experiment_id = MlflowClient(tracking_uri()).get_run(run_id).info.experiment_id
            logged = mlflow.initialize_logged_model(
                name=MODEL_NAME, source_run_id=run_id, experiment_id=experiment_id
            )
            info = mlflow.pytorch.log_model(
                model,
                name=MODEL_NAME,
                model_id=logged.model_id,
                serialization_format="pickle",  # a full nn.Module, any batch and length
                run_id=run_id,
                code_paths=[str(MODELS_PACKAGE)],
                signature=signature,
                input_example=example,
                metadata={METADATA_KEY: description},
                pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
            )
            return info.model_uri
        except Exception as error:
            if time.monotonic() + delay > deadline:
                raise
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            print(f"tracking: logging the model failed ({reason}); retry in {delay:g} s",
                  file=sys.stderr)  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


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


def load_model_uri(uri: str, client: MlflowClient) -> TrainedModel:
    """A sequence model logged as an MLflow Model (``runs:/<id>/model``, ``models:/<name>@<alias>``,
    ``models:/<name>/<version>``); ``ConfigError`` if there is none."""
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        info = mlflow.models.get_model_info(uri)
    except (MlflowException, OSError) as error:
        first = str(error).splitlines()[0][:300]
        raise ConfigError(f"no MLflow Model at {uri} ({first})") from None
    description = (info.metadata or {}).get(METADATA_KEY)
    if not isinstance(description, dict) or "input_width" not in description:
        raise ConfigError(f"{uri} is not a sequence model of this project (no {METADATA_KEY} "
                          "description in its MLmodel metadata)")  # fmt: skip
    config, task = _rebuild_config(description, uri)
    core = mlflow.pytorch.load_model(uri, map_location="cpu").eval()
    run_id = info.run_id
    label = f"{config.model.name}-{run_id[:8]}" if run_id else uri
    if run_id:
        label = client.get_run(run_id).data.tags.get("mlflow.runName") or label
    if uri.startswith("models:/"):
        label = uri.removeprefix("models:/")
    return TrainedModel(label, uri, run_id, config, task, core)


def load_from_run(client: MlflowClient, run_id: str) -> TrainedModel:
    """The model of train run ``run_id``: its MLflow Model, or the ``model/`` files an older
    version logged; ``ConfigError`` if there is neither."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--run_ids: no run {run_id!r} in this tracking store") from None
    if any(output.model_id for output in (run.outputs.model_outputs if run.outputs else [])):
        return load_model_uri(f"runs:/{run_id}/{MODEL_NAME}", client)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, str(Path(LEGACY_WEIGHTS).parent), tmp))
            description = json.loads((local / "config.json").read_text())
        except (MlflowException, OSError):
            raise ConfigError(
                f"--run_ids: run {run_id} logged no model (only a train run that finished logs "
                "its model; resume an interrupted one first)"
            ) from None
        try:
            state = torch.load(local / "weights.pt", map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as error:
            raise CheckpointError(
                f"run {run_id}: {LEGACY_WEIGHTS} is unreadable ({error})"
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


def load_trained(source: str, client: MlflowClient) -> TrainedModel:
    """A model URI (``runs:/``, ``models:/``) or a train run id."""
    if source.startswith(("runs:/", "models:/")):
        return load_model_uri(source, client)
    return load_from_run(client, source)
