"""Logging that survives a tracking-server outage: nothing blocks training, nothing is lost.

Every metric and artifact a pipeline logs while training goes through a ``TrackingOutbox``. It
sends at once when the store answers. When it does not, it keeps the items, writes the pending
metrics to ``<run dir>/pending_metrics.jsonl``, and retries with exponential backoff (1, 2, 4 ...
60 s) without MLflow's own minutes-long retry loop, so a training step never waits for the
network. ``close`` makes a last, patient attempt; if the server is still away it says so and
leaves the spool, which ``python -m pipelines.outbox <run_id>`` uploads later (a resumed run
picks it up too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from pipelines.atomic_files import atomic_write
from pipelines.tracking import run_dir, tracking_uri

SPOOL_FILE = "pending_metrics.jsonl"
ARTIFACT_SPOOL_FILE = "pending_artifacts.json"
BATCH_LIMIT = 1000  # MLflow's log_batch accepts at most 1000 metrics per call


@contextmanager
def _single_attempt(timeout_s: int = 10) -> Iterator[None]:
    """One HTTP attempt with a short timeout (MLflow otherwise retries for minutes)."""
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    previous = {name: os.environ.get(name) for name in names}
    os.environ.update({names[0]: "0", names[1]: str(timeout_s)})
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class TrackingOutbox:
    """Buffered, retrying delivery of one run's metrics and artifacts."""

    def __init__(
        self,
        run_id: str,
        client: MlflowClient | None = None,
        spool_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.run_id = run_id
        self.client = client or MlflowClient(tracking_uri())
        self.spool_dir = spool_dir or run_dir(run_id)
        self.clock = clock
        self.max_backoff_s = max_backoff_s
        self.metrics: list[Metric] = []
        self.artifacts: dict[tuple[str, str | None], Path] = {}
        self.logged_through: dict[str, int] = {}
        self.failures = 0
        self.seconds_spent = 0.0  # wall-clock inside logging calls: the overhead a run pays
        self._next_attempt = 0.0
        self._load_spool()

    # ---- what pipelines call -------------------------------------------------------------
    def skip_logged(self, logged_through: Mapping[str, int]) -> None:
        """Drop later points at steps <= these (a resumed run replays a few steps)."""
        self.logged_through.update(logged_through)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        started = time.perf_counter()
        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            if step <= self.logged_through.get(key, -1):
                continue
            self.metrics.append(Metric(key, float(value), timestamp, int(step)))
        self.flush()
        self.seconds_spent += time.perf_counter() - started

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        """Queue a file (the newest version of the same target replaces an unsent older one)."""
        started = time.perf_counter()
        local_path = Path(local_path)
        self.artifacts[(local_path.name, artifact_path)] = local_path
        self.flush()
        self.seconds_spent += time.perf_counter() - started

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Save the figure under the run dir first, so an outage cannot lose it."""
        started = time.perf_counter()
        local = self.spool_dir / "figures" / artifact_file
        local.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(local, dpi=100, bbox_inches="tight")
        self.seconds_spent += time.perf_counter() - started
        parent = str(Path(artifact_file).parent)
        self.log_artifact(local, None if parent == "." else parent)

    @property
    def pending(self) -> int:
        return len(self.metrics) + len(self.artifacts)

    def flush(self, force: bool = False) -> bool:
        """Send what is pending; on failure schedule the next attempt. True when all is sent."""
        if not self.pending:
            return True
        if not force and self.clock() < self._next_attempt:
            return False
        try:
            with _single_attempt():
                self._send()
        except Exception as error:  # any transport or server error: keep the items, retry
            self._fail(error)
            return False
        if self.failures:
            print(
                f"tracking: store reachable again; buffered items of run {self.run_id} uploaded",
                file=sys.stderr,
            )
        self.failures = 0
        self._clear_spool()
        return True

    def close(self, timeout_s: float = 120.0, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Last delivery attempt, patient up to ``timeout_s``; warn loudly if anything is left."""
        deadline = self.clock() + timeout_s
        while not self.flush(force=True):
            if self.clock() >= deadline:
                print(
                    f"WARNING: tracking store {self.client.tracking_uri} still unreachable; "
                    f"{len(self.metrics)} metric points and {len(self.artifacts)} artifacts of "
                    f"run {self.run_id} are kept in {self.spool_dir}. Upload them later with:\n"
                    f"    python -m pipelines.outbox {self.run_id}",
                    file=sys.stderr,
                )
                return False
            sleep(min(5.0, max(0.0, deadline - self.clock())))
        return True

    # ---- internals -----------------------------------------------------------------------
    def _send(self) -> None:
        while self.metrics:
            chunk = self.metrics[:BATCH_LIMIT]
            self.client.log_batch(self.run_id, metrics=chunk)
            del self.metrics[: len(chunk)]
        for key in list(self.artifacts):
            self.client.log_artifact(self.run_id, str(self.artifacts[key]), key[1])
            del self.artifacts[key]

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
        artifacts = [
            {"local_path": str(path), "artifact_path": target}
            for (_, target), path in self.artifacts.items()
        ]
        _write_text(self.spool_dir / ARTIFACT_SPOOL_FILE, json.dumps(artifacts))

    def _load_spool(self) -> None:
        metrics_file = self.spool_dir / SPOOL_FILE
        if metrics_file.is_file():
            for line in metrics_file.read_text().splitlines():
                if line.strip():
                    item = json.loads(line)
                    self.metrics.append(
                        Metric(item["key"], item["value"], item["timestamp"], item["step"])
                    )
        artifacts_file = self.spool_dir / ARTIFACT_SPOOL_FILE
        if artifacts_file.is_file():
            for item in json.loads(artifacts_file.read_text()):
                path = Path(item["local_path"])
                if path.is_file():
                    self.artifacts[(path.name, item["artifact_path"])] = path

    def _clear_spool(self) -> None:
        for name in (SPOOL_FILE, ARTIFACT_SPOOL_FILE):
            (self.spool_dir / name).unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda stream: stream.write(text.encode()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.outbox",
        description="Upload the metrics and artifacts a run buffered during a tracking outage.",
    )
    parser.add_argument("run_id")
    parser.add_argument("--timeout_s", type=float, default=60.0)
    args = parser.parse_args(argv)
    outbox = TrackingOutbox(args.run_id)
    if not outbox.pending:
        print(f"nothing pending for run {args.run_id} in {outbox.spool_dir}")
        return 0
    count = outbox.pending
    if outbox.close(args.timeout_s):
        print(f"uploaded {count} buffered items of run {args.run_id}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
