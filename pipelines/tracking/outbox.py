"""Logging that survives a tracking-server outage: nothing blocks training, nothing is lost.

Everything a pipeline records in its run goes through a ``TrackingOutbox``: params, tags,
metrics, dataset inputs, artifacts, and at the very end the run's final tags and status. It
sends at once when the store answers. When it does not, it keeps the items, spools them to
``<run dir>/`` and retries with exponential backoff (1, 2, 4 ... 60 s), one fail-fast attempt
each (:mod:`pipelines.tracking.transport`), so a training step never waits for the network.
``close`` makes a last, patient attempt; if the server is still away it says so and leaves the
spool, which ``python -m pipelines.tracking.outbox <run_id>`` delivers later, status included.

The outbox is thread-safe: the system-metrics sampler queues into it from its own thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.service_pb2 import DatasetInput as DatasetInputProto
from mlflow.utils.proto_json_utils import message_to_json, parse_dict

from pipelines.common.atomic_files import atomic_write
from pipelines.tracking.store import run_dir, tracking_uri
from pipelines.tracking.transport import Transport, transport_for

# what a store answers to a request it will never accept, as opposed to an outage
PERMANENT_ERRORS = frozenset(
    {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"}
)
SPOOL_FILE = "pending_metrics.jsonl"
STATE_SPOOL_FILE = "pending_state.json"
WORKER_SPOOLS = "workers"  # <run dir>/workers/<host>-<pid>: one spool per process of a shared run
# MLflow's log_batch limits per request
METRICS_PER_BATCH, PARAMS_PER_BATCH, TAGS_PER_BATCH = 1000, 100, 100


class TrackingOutbox:
    """Buffered, retrying delivery of one run's logging, ending with its status."""

    def __init__(
        self,
        run_id: str,
        transport: Transport | None = None,
        spool_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.run_id = run_id
        self.transport = transport or transport_for(tracking_uri())
        self.spool_dir = spool_dir or run_dir(run_id)
        self.clock = clock
        self.max_backoff_s = max_backoff_s
        self.metrics: list[Metric] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.inputs: list[DatasetInput] = []
        self.artifacts: dict[tuple[str, str | None], Path] = {}
        self.final_status: tuple[str, int] | None = None  # (status, end time in ms)
        self.logged_through: dict[str, int] = {}
        self.failures = 0
        self.rejected: list[str] = []  # what the store refused for good (the run then FAILS)
        self.seconds_spent = 0.0  # wall-clock inside logging calls: the overhead a run pays
        self._next_attempt = 0.0
        self._lock = threading.RLock()
        self._in_flight: Callable[[], object] = lambda: None  # drops the chunk being sent
        self._load_spool()

    # ---- what pipelines call -------------------------------------------------------------
    def skip_logged(self, logged_through: Mapping[str, int]) -> None:
        """Drop later points at steps <= these (a resumed run replays a few steps)."""
        with self._lock:
            self.logged_through.update(logged_through)

    def log_metrics(self, metrics: Mapping[str, float], step: int, flush: bool = True) -> None:
        """Queue one point per metric; ``flush=False`` only queues (for other threads)."""
        started = time.perf_counter()
        timestamp = int(time.time() * 1000)
        with self._lock:
            for key, value in metrics.items():
                if step <= self.logged_through.get(key, -1):
                    continue
                self.metrics.append(Metric(key, float(value), timestamp, int(step)))
            if flush:
                self.flush()
            self.seconds_spent += time.perf_counter() - started

    def log_params(self, params: Mapping[str, Any]) -> None:
        with self._lock:
            self.params.update({key: str(value) for key, value in params.items()})
            self.flush()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        with self._lock:
            self.tags.update({key: str(value) for key, value in tags.items()})
            self.flush()

    def log_inputs(self, datasets: Sequence[DatasetInput]) -> None:
        with self._lock:
            self.inputs.extend(datasets)
            self.flush()

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        """Queue a file (the newest version of the same target replaces an unsent older one)."""
        started = time.perf_counter()
        local_path = Path(local_path)
        with self._lock:
            self.artifacts[(local_path.name, artifact_path)] = local_path
            self.flush()
            self.seconds_spent += time.perf_counter() - started

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Save the figure under the run dir first, so an outage cannot lose it."""
        started = time.perf_counter()
        local = self._local_copy(artifact_file)
        figure.savefig(local, dpi=100, bbox_inches="tight")
        self.seconds_spent += time.perf_counter() - started
        self.log_artifact(local, _parent(artifact_file))

    def log_text(self, text: str, artifact_file: str) -> None:
        local = self._local_copy(artifact_file)
        _write_text(local, text)
        self.log_artifact(local, _parent(artifact_file))

    def end_run(self, status: str) -> None:
        """Queue the run's end; it is sent after everything queued before it."""
        with self._lock:
            self.final_status = (status, int(time.time() * 1000))
            self.flush(force=True)

    @property
    def pending(self) -> int:
        with self._lock:
            queued = len(self.metrics) + len(self.params) + len(self.tags) + len(self.inputs)
            return queued + len(self.artifacts) + (self.final_status is not None)

    def flush(self, force: bool = False) -> bool:
        """Send what is pending; on failure schedule the next attempt. True when all is sent."""
        with self._lock:
            if not self.pending:
                return True
            if not force and self.clock() < self._next_attempt:
                return False
            while True:
                try:
                    self._send()
                    break
                except MlflowException as error:
                    if error.error_code not in PERMANENT_ERRORS:
                        self._fail(error)
                        return False
                    self._reject(error)  # drop the refused chunk, send the rest
                except Exception as error:  # transport or server error: keep the items, retry
                    self._fail(error)
                    return False
            if self.failures:
                print(
                    f"tracking: store reachable again; buffered items of run {self.run_id} "
                    "uploaded",
                    file=sys.stderr,
                )
            self.failures = 0
            self._clear_spool()
            return True

    def close(self, timeout_s: float = 120.0, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Last delivery attempt, patient up to ``timeout_s``; warn loudly if anything is left."""
        deadline = self.clock() + timeout_s
        announced = False
        while not self.flush(force=True):
            if not announced:
                print(
                    f"tracking: waiting up to {timeout_s:g} s for {self.transport.tracking_uri} "
                    f"to take the last {self.pending} items of run {self.run_id}",
                    file=sys.stderr,
                )
                announced = True
            if self.clock() >= deadline:
                print(
                    f"WARNING: tracking store {self.transport.tracking_uri} still unreachable; "
                    f"{self.pending} items of run {self.run_id} (its final status included) "
                    f"are kept in {self.spool_dir}. Upload them later with:\n"
                    f"    python -m pipelines.tracking.outbox {self.run_id}",
                    file=sys.stderr,
                )
                return False
            sleep(min(1.0, max(0.0, deadline - self.clock())))  # refused calls are cheap
        return True

    # ---- internals -----------------------------------------------------------------------
    def _send(self) -> None:
        """In order: params, tags, metrics, inputs, artifacts, then the status. Each delivered
        chunk leaves the queue at once, so a retry never sends it again; ``_in_flight`` says
        which chunk a refusal was about."""
        send = self.transport
        while self.params:
            chunk = dict(list(self.params.items())[:PARAMS_PER_BATCH])
            self._in_flight = lambda chunk=chunk: [self.params.pop(k) for k in chunk]
            send.log_batch(self.run_id, [], [Param(k, v) for k, v in chunk.items()], [])
            self._in_flight()
        while self.tags:
            chunk = dict(list(self.tags.items())[:TAGS_PER_BATCH])
            self._in_flight = lambda chunk=chunk: [self.tags.pop(k) for k in chunk]
            send.log_batch(self.run_id, [], [], [RunTag(k, v) for k, v in chunk.items()])
            self._in_flight()
        while self.metrics:
            batch = self.metrics[:METRICS_PER_BATCH]
            self._in_flight = lambda batch=batch: self.metrics.__delitem__(slice(0, len(batch)))
            send.log_batch(self.run_id, batch, [], [])
            self._in_flight()
        if self.inputs:
            self._in_flight = self.inputs.clear
            send.log_inputs(self.run_id, self.inputs)
            self._in_flight()
        for key in list(self.artifacts):
            self._in_flight = lambda key=key: self.artifacts.pop(key)
            send.log_artifact(self.run_id, self.artifacts[key], key[1])
            self._in_flight()
        if self.final_status is not None:
            self._in_flight = lambda: setattr(self, "final_status", None)
            send.set_terminated(self.run_id, *self.final_status)
            self._in_flight()

    def _reject(self, error: MlflowException) -> None:
        """The store refused a chunk for good: say so loudly, drop it, keep the rest going."""
        reason = str(error).splitlines()[0][:300]
        self.rejected.append(reason)
        self._in_flight()
        print(
            f"ERROR: tracking store rejected items of run {self.run_id}: {reason}", file=sys.stderr
        )

    def _local_copy(self, artifact_file: str) -> Path:
        local = self.spool_dir / "files" / artifact_file
        local.parent.mkdir(parents=True, exist_ok=True)
        return local

    def _fail(self, error: Exception) -> None:
        self.failures += 1
        delay = min(self.max_backoff_s, 2.0 ** (self.failures - 1))
        self._next_attempt = self.clock() + delay
        if self.failures == 1:
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            print(
                f"WARNING: tracking store unreachable ({reason}); training continues, logging "
                f"is buffered in {self.spool_dir} and retried with backoff",
                file=sys.stderr,
            )
        self._write_spool()

    def _write_spool(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step})
            for m in self.metrics
        ]
        _write_text(self.spool_dir / SPOOL_FILE, "".join(line + "\n" for line in lines))
        state = {
            "params": self.params,
            "tags": self.tags,
            "inputs": [json.loads(message_to_json(item.to_proto())) for item in self.inputs],
            "artifacts": [
                {"local_path": str(path), "artifact_path": target}
                for (_, target), path in self.artifacts.items()
            ],
            "final_status": self.final_status,
        }
        _write_text(self.spool_dir / STATE_SPOOL_FILE, json.dumps(state))

    def _load_spool(self) -> None:
        metrics_file = self.spool_dir / SPOOL_FILE
        if metrics_file.is_file():
            for line in metrics_file.read_text().splitlines():
                if line.strip():
                    item = json.loads(line)
                    self.metrics.append(
                        Metric(item["key"], item["value"], item["timestamp"], item["step"])
                    )
        state_file = self.spool_dir / STATE_SPOOL_FILE
        if not state_file.is_file():
            return
        state = json.loads(state_file.read_text())
        self.params.update(state.get("params", {}))
        self.tags.update(state.get("tags", {}))
        for item in state.get("inputs", []):
            self.inputs.append(DatasetInput.from_proto(parse_dict(item, DatasetInputProto())))
        for item in state.get("artifacts", []):
            path = Path(item["local_path"])
            if path.is_file():
                self.artifacts[(path.name, item["artifact_path"])] = path
        if state.get("final_status"):
            status, end_time = state["final_status"]
            self.final_status = (status, int(end_time))

    def _clear_spool(self) -> None:
        for name in (SPOOL_FILE, STATE_SPOOL_FILE):
            (self.spool_dir / name).unlink(missing_ok=True)


def _parent(artifact_file: str) -> str | None:
    parent = str(Path(artifact_file).parent)
    return None if parent == "." else parent


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda stream: stream.write(text.encode()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.tracking.outbox",
        description="Upload what a run buffered during a tracking outage, its status included.",
    )
    parser.add_argument("run_id")
    parser.add_argument("--timeout_s", type=float, default=60.0)
    args = parser.parse_args(argv)
    home = run_dir(args.run_id)
    spools = [home, *sorted(path for path in (home / WORKER_SPOOLS).glob("*") if path.is_dir())]
    failed = 0
    for spool in spools:
        outbox = TrackingOutbox(args.run_id, spool_dir=spool)
        if not outbox.pending:
            print(f"nothing pending for run {args.run_id} in {spool}")
            continue
        count = outbox.pending
        if outbox.close(args.timeout_s):
            print(f"uploaded {count} buffered items of run {args.run_id} from {spool}")
        else:
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
