"""Trained models as MLflow Models: logging them, and reading them (and their description) back.

A run logs its core with ``mlflow.pytorch.log_model``: pickled, with this project's ``models/``
package shipped beside it (``code_paths``), a tensor signature, an input example, and the
description that rebuilds it (config, widths) as metadata. So
``mlflow.pytorch.load_model("runs:/<id>/model")`` works in any environment with torch and
MLflow, without this checkout. Runs of older versions logged ``model/weights.pt`` and
``model/config.json`` instead; those are read back too. What a description means is the
pipeline's business (:mod:`pipelines.sequence.trained` rebuilds sequence models from it).
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
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

from pipelines.common.config import ConfigError
from pipelines.tracking.checkpoints import CheckpointError
from pipelines.tracking.store import PROJECT_ROOT, check_reachable, tracking_uri

MODEL_NAME = "model"  # runs:/<run id>/model
LEGACY_WEIGHTS = "model/weights.pt"
METADATA_KEY = "ntmlab"
MODELS_PACKAGE = PROJECT_ROOT / "models"
LOG_MODEL_PATIENCE_S = 120.0


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
    step: int = 0,
    patience_s: float = LOG_MODEL_PATIENCE_S,
) -> str:
    """Log ``core`` as the run's MLflow Model (``runs:/<run_id>/model``); return its URI.

    MLflow links to the model the run's metrics logged at ``step``, which the Models tab then
    ranks by: pass the step of the final scores, once they are in the store.

    A CPU copy in eval mode is pickled, so a model trained on a GPU loads anywhere. A store
    that does not answer is retried with backoff for ``patience_s`` (the run's other logging
    waits in its outbox meanwhile), then the error is raised and the run ends FAILED. Each try
    first asks the server's health endpoint (5 s at most), so a server that stays away costs
    ``patience_s`` plus seconds; only a server lost in the middle of an upload leaves that try
    to MLflow's own retries.
    """
    model = copy.deepcopy(core).cpu().eval()
    example = input_example.detach().cpu().numpy().astype(np.float32)
    mlflow.set_tracking_uri(tracking_uri())  # the same store the pipeline's client writes to
    deadline, delay = time.monotonic() + patience_s, 1.0
    while True:
        try:
            # a down server fails this probe in seconds; MLflow's own client would retry
            # each of log_model's calls for minutes before the deadline is looked at again
            check_reachable(tracking_uri())
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
                step=step,
            )
            return info.model_uri
        except Exception as error:
            if time.monotonic() + delay > deadline:
                raise
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            print(
                f"tracking: logging the model failed ({reason}); retry in {delay:g} s",
                file=sys.stderr,
            )
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def logged_description(uri: str, client: MlflowClient) -> tuple[dict[str, Any], str | None]:
    """The description an MLflow Model (``runs:/<id>/model``, ``models:/<name>@<alias>``,
    ``models:/<name>/<version>``) was logged with, and its run id; ``ConfigError`` if there is
    no such model or it carries no description of this project."""
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        info = mlflow.models.get_model_info(uri)
    except (MlflowException, OSError) as error:
        first = str(error).splitlines()[0][:300]
        raise ConfigError(f"no MLflow Model at {uri} ({first})") from None
    description = (info.metadata or {}).get(METADATA_KEY)
    if not isinstance(description, dict):
        raise ConfigError(
            f"{uri} is not a model of this project (no {METADATA_KEY} "
            "description in its MLmodel metadata)"
        )
    return description, info.run_id


def load_logged_model(uri: str) -> nn.Module:
    """The pickled module of an MLflow Model, on the CPU, in eval mode."""
    return mlflow.pytorch.load_model(uri, map_location="cpu").eval()


def has_logged_model(client: MlflowClient, run_id: str) -> bool:
    """Whether ``run_id`` logged an MLflow Model (runs of older versions logged files)."""
    run = client.get_run(run_id)
    return any(output.model_id for output in (run.outputs.model_outputs if run.outputs else []))


def legacy_model_files(
    client: MlflowClient, run_id: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(description, weights)`` of a run an older version logged as ``model/`` files;
    ``ConfigError`` when the run logged no model, ``CheckpointError`` when it is unreadable."""
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
    return description, state
