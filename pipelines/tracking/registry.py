"""The model registry: versions of a named model, and the ``champion`` alias on the best one.

Each version records the metric it was judged by (name, value, direction). The alias moves to
a new version only when that version is better on the same metric than the current champion,
so a later, worse trial or run never takes its place.
"""

from __future__ import annotations

import math
import sys

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.tracking.models import MODEL_NAME

CHAMPION = "champion"
METRIC_TAG, VALUE_TAG, DIRECTION_TAG = "ntmlab.metric", "ntmlab.metric_value", "ntmlab.direction"


def _better(value: float, than: float, direction: str) -> bool:
    if math.isnan(than):
        return not math.isnan(value)
    return value < than if direction == "minimize" else value > than


def register(
    client: MlflowClient,
    run_id: str,
    name: str,
    metric: str,
    value: float,
    direction: str,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Register run ``run_id``'s model as a new version of ``name``; move ``champion`` to it if
    it beats the current one on ``metric`` (or there is none). Returns the new version."""
    mlflow.set_tracking_uri(client.tracking_uri)
    version_tags = {METRIC_TAG: metric, VALUE_TAG: repr(float(value)), DIRECTION_TAG: direction}
    version = mlflow.register_model(
        f"runs:/{run_id}/{MODEL_NAME}", name, tags={**version_tags, **(tags or {})}
    )
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is None:
        promote = True
    elif champion.tags.get(METRIC_TAG) != metric:
        promote = False
        print(
            f"registry: {name}@{CHAMPION} was judged on {champion.tags.get(METRIC_TAG)}, not "
            f"{metric}; version {version.version} is registered but not promoted",
            file=sys.stderr,
        )
    else:
        promote = _better(float(value), float(champion.tags.get(VALUE_TAG, "nan")), direction)
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    return version
