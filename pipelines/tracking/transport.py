"""One delivery attempt per call to the tracking store, failing fast, with no global settings.

A database store (sqlite, PostgreSQL) answers or raises at once, so MLflow's client is used as
is. An HTTP server is different: MLflow's client retries a refused call for minutes, configured
only by process-wide environment variables. :class:`RestTransport` calls the same REST endpoints
through MLflow's own request helper with the retries and the timeout given per call, so the
outbox owns the retry policy and no other thread's calls change behaviour.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from mlflow.entities import DatasetInput, Metric, Param, RunStatus, RunTag
from mlflow.protos.service_pb2 import GetRun, LogBatch, LogInputs, UpdateRun
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.proto_json_utils import message_to_json
from mlflow.utils.rest_utils import augmented_raise_for_status, http_request, verify_rest_response

from pipelines.tracking.store import is_http

DEFAULT_TIMEOUT_S = 10.0


class Transport(Protocol):
    """What the outbox needs from a store; every method either delivers or raises."""

    tracking_uri: str

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Sequence[Param],
        tags: Sequence[RunTag],
    ) -> None: ...

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None: ...

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str | None) -> None: ...

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None: ...


class StoreTransport:
    """A database-backed store through MLflow's client (its calls do not retry)."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.tracking_uri = client.tracking_uri

    def log_batch(self, run_id, metrics, params, tags) -> None:
        self.client.log_batch(run_id, metrics=list(metrics), params=list(params), tags=list(tags))

    def log_inputs(self, run_id, datasets) -> None:
        self.client.log_inputs(run_id, list(datasets))

    def log_artifact(self, run_id, local_path, artifact_path) -> None:
        self.client.log_artifact(run_id, str(local_path), artifact_path)

    def set_terminated(self, run_id, status, end_time) -> None:
        self.client.set_terminated(run_id, status, end_time)


class RestTransport:
    """An MLflow tracking server over REST: one attempt per call, ``timeout_s`` each."""

    def __init__(self, uri: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.tracking_uri = uri
        self.timeout_s = timeout_s
        self._creds = get_default_host_creds(uri)
        self._artifact_uris: dict[str, str] = {}

    def _request(self, creds, endpoint: str, method: str, **kwargs):
        return http_request(
            creds,
            endpoint,
            method,
            max_retries=0,
            backoff_factor=0,
            backoff_jitter=0,
            timeout=self.timeout_s,
            **kwargs,
        )

    def _call(self, endpoint: str, message, method: str = "POST") -> dict:
        body = json.loads(message_to_json(message))
        key = "params" if method == "GET" else "json"
        response = self._request(self._creds, f"/api/2.0/mlflow/{endpoint}", method, **{key: body})
        return verify_rest_response(response, endpoint).json()

    def log_batch(self, run_id, metrics, params, tags) -> None:
        message = LogBatch(
            run_id=run_id,
            metrics=[metric.to_proto() for metric in metrics],
            params=[param.to_proto() for param in params],
            tags=[tag.to_proto() for tag in tags],
        )
        self._call("runs/log-batch", message)

    def log_inputs(self, run_id, datasets) -> None:
        self._call(
            "runs/log-inputs", LogInputs(run_id=run_id, datasets=[d.to_proto() for d in datasets])
        )

    def set_terminated(self, run_id, status, end_time) -> None:
        message = UpdateRun(
            run_id=run_id,
            run_uuid=run_id,
            status=RunStatus.from_string(status),
            end_time=end_time,
        )
        self._call("runs/update", message)

    def log_artifact(self, run_id, local_path, artifact_path) -> None:
        """Served artifacts (``mlflow-artifacts:``) go through the same single attempt; any
        other artifact store (S3, a shared path) through MLflow's own repository client."""
        artifact_uri = self._artifact_uri(run_id)
        if not artifact_uri.startswith("mlflow-artifacts:"):
            MlflowClient(self.tracking_uri).log_artifact(run_id, str(local_path), artifact_path)
            return
        resolved = MlflowArtifactsRepository.resolve_uri(artifact_uri, self.tracking_uri)
        local_path = Path(local_path)
        parts = (artifact_path, local_path.name) if artifact_path else (local_path.name,)
        with open(local_path, "rb") as stream:
            response = self._request(
                get_default_host_creds(resolved), posixpath.join("/", *parts), "PUT", data=stream
            )
        augmented_raise_for_status(response)

    def _artifact_uri(self, run_id: str) -> str:
        if run_id not in self._artifact_uris:
            run = self._call("runs/get", GetRun(run_id=run_id, run_uuid=run_id), method="GET")
            self._artifact_uris[run_id] = run["run"]["info"]["artifact_uri"]
        return self._artifact_uris[run_id]


def transport_for(uri: str, client: MlflowClient | None = None) -> Transport:
    """The fail-fast transport for the store at ``uri``."""
    if is_http(uri):
        return RestTransport(uri)
    return StoreTransport(client or MlflowClient(uri))
