"""System metrics (``system/cpu_utilization_percentage``, memory, disk, network, GPU) for a run.

MLflow's own sampler talks to the store from its thread with MLflow's minutes-long retries and
stops for good after one failed call, so an outage would end its curves and could hold up the
end of the run. This sampler reuses MLflow's collectors (the same metric names the UI's System
metrics tab shows) and queues each aggregate into the run's outbox, which delivers it with
everything else.
"""

from __future__ import annotations

import logging
import os
import threading

from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor
from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor
from mlflow.tracking import MlflowClient

from pipelines.tracking.outbox import TrackingOutbox

PREFIX = "system/"
INTERVAL_ENV = "NTMLAB_SYSTEM_METRICS_INTERVAL_S"
DEFAULT_INTERVAL_S = 10.0  # one sample per 10 s: a negligible overhead (docs/results-log.md)


def _gpu_monitor() -> BaseMetricsMonitor | None:
    """NVIDIA (pynvml) or AMD (ROCm) collectors when such a GPU and its library are present."""
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        return GPUMonitor()
    except Exception:
        pass
    try:
        from mlflow.system_metrics.metrics.rocm_monitor import ROCMMonitor

        return ROCMMonitor()
    except Exception:
        return None


class SystemMetricsSampler:
    """A daemon thread that samples the machine every ``interval_s`` until stopped."""

    def __init__(
        self,
        outbox: TrackingOutbox,
        client: MlflowClient,
        resume: bool = False,
        interval_s: float | None = None,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.resume = resume
        self.interval_s = interval_s or float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL_S)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.monitors: list[BaseMetricsMonitor] = []
        self.step = 0

    def start(self) -> None:
        self.monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
        if (gpu := _gpu_monitor()) is not None:
            self.monitors.append(gpu)
        if self.resume:  # continue the run's system curves rather than restarting at step 0
            metrics = self.client.get_run(self.outbox.run_id).data.metrics
            steps = [
                max(point.step for point in self.client.get_metric_history(self.outbox.run_id, key))
                for key in metrics
                if key.startswith(PREFIX)
            ]
            self.step = max(steps) + 1 if steps else 0
        self._thread = threading.Thread(target=self._loop, name="system-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and queue a last sample (a run shorter than one interval still gets one)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.sample()

    def sample(self) -> None:
        metrics: dict[str, float] = {}
        for monitor in self.monitors:
            try:
                monitor.collect_metrics()
                metrics.update(monitor.aggregate_metrics())
            except Exception:  # a collector that breaks mid-run must not break the run
                continue
            finally:
                monitor.clear_metrics()
        if metrics:
            self.outbox.log_metrics(
                {PREFIX + key: value for key, value in metrics.items()}, self.step, flush=False
            )
            self.step += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()
