"""Optuna's dashboard over a study storage, opened the way ``hpo`` opens it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import optuna

from pipelines.common.config import option
from pipelines.search.storage import default_storage, open_storage, redacted


@dataclass
class DashboardConfig:
    storage: str | None = option(None, "Optuna storage (empty: the one hpo uses by default)")
    host: str = option("127.0.0.1", "address to listen on (loopback: only this machine)")
    port: int = option(8080, "port to listen on", min=1, max=65535)


def dashboard(config: DashboardConfig) -> None:
    from optuna_dashboard import run_server

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = config.storage or default_storage()
    storage = open_storage(url)
    print(f"dashboard: {redacted(url)} at http://{config.host}:{config.port}/", flush=True)
    run_server(storage, host=config.host, port=config.port)
