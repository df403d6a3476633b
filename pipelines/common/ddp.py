"""The worker processes of data-parallel training, which the pipelines start themselves.

With ``devices=N`` a pipeline starts its N - 1 workers (:func:`worker_processes`), as
``torchrun`` would: each runs the same fit with ``LOCAL_RANK`` set, and Lightning sees
processes created externally. The pipeline, not Lightning's launcher, then owns their lives:
when rank 0 fails or is interrupted the workers are stopped (none is left behind), and a
worker that dies makes rank 0 fail at its next all-reduce instead of being SIGKILLed by
Lightning's process observer, so the MLflow run still ends with an honest status.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from pipelines.common.config import ConfigError
from pipelines.common.placement import Placement

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
WORKER_SPEC_ENV = "NTMLAB_DDP_WORKER"
WORKER_STOP_GRACE_S = 5.0
WORKER_EXIT_WAIT_S = 120.0


def worker_spec(entry: str, config: dict, run_id: str, checkpoint: str | None = None) -> dict:
    """What a worker needs to run rank 0's fit: ``entry`` (``"module:function"``, called with
    this dict), the config as a dict, the run and the checkpoint to resume from."""
    return {"entry": entry, "config": config, "run_id": run_id, "checkpoint": checkpoint}


def run_worker(spec: dict[str, Any]) -> None:
    """Call the fit ``spec["entry"]`` names: the body of ``python -m pipelines.ddp_worker``."""
    module, _, function = spec["entry"].partition(":")
    getattr(importlib.import_module(module), function)(spec)


def _env_rank(name: str) -> int:
    try:
        return int(os.environ.get(name) or 0)
    except ValueError:
        return 0


def is_worker_process() -> bool:
    """A data-parallel process other than global rank 0: it trains, but never tracks."""
    return any(_env_rank(name) > 0 for name in RANK_VARIABLES)


def worker_run_id() -> str:
    """The MLflow run rank 0 opened (its id is inherited as ``MLFLOW_RUN_ID``): a worker's
    checkpoint paths are that run's."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        raise ConfigError(
            "a data-parallel worker (rank > 0) needs MLFLOW_RUN_ID: set it on every node to the "
            "run that rank 0 opened"
        )
    return run_id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(processes: list[subprocess.Popen], grace_s: float) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:  # blocked in a collective: signals cannot reach it
            process.kill()
            process.wait()


@contextmanager
def worker_processes(placement: Placement, spec: dict) -> Iterator[list[subprocess.Popen]]:
    """Start this node's workers (local ranks 1..N-1) for the duration of one fit.

    Each worker is ``python -m pipelines.ddp_worker`` with ``spec`` (:func:`worker_spec`) in
    ``NTMLAB_DDP_WORKER``: it runs exactly this fit, whichever pipeline asked for it (a train
    run, an HPO trial, a grid cell).

    A no-op for a single process, inside a worker, and when a launcher such as ``torchrun``
    already created the processes (``LOCAL_RANK`` set). On success the workers finish the fit
    with rank 0 and are waited for; on any exception they are stopped.
    """
    if placement.world_size <= 1 or "LOCAL_RANK" in os.environ:
        yield []
        return
    saved = {name: os.environ.get(name) for name in LAUNCH_VARIABLES}
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("NODE_RANK", "0")
    os.environ["WORLD_SIZE"] = str(placement.world_size)
    os.environ["LOCAL_RANK"] = "0"
    # one process per core share, as Lightning's launcher does: N processes of all-core
    # thread pools would fight over the same cores
    threads = os.environ.get("OMP_NUM_THREADS") or str(
        max(1, (os.cpu_count() or 1) // placement.processes_per_node)
    )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    processes: list[subprocess.Popen] = []
    try:
        for local_rank in range(1, placement.processes_per_node):
            env = {
                **os.environ,
                "LOCAL_RANK": str(local_rank),
                "OMP_NUM_THREADS": threads,
                WORKER_SPEC_ENV: json.dumps(spec),
            }
            command = [sys.executable, "-m", "pipelines.ddp_worker"]
            processes.append(subprocess.Popen(command, env=env))
        yield processes
    except BaseException:
        _stop(processes, WORKER_STOP_GRACE_S)
        raise
    else:
        _stop_after(processes, WORKER_EXIT_WAIT_S)
    finally:
        torch.set_num_threads(previous_threads)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # rank 0 scores and logs on its own
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _stop_after(processes: list[subprocess.Popen], wait_s: float) -> None:
    """Workers leave on their own once the fit ends; one that does not is stopped."""
    for process in processes:
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            _stop([process], WORKER_STOP_GRACE_S)
