"""Optuna's dashboard over the studies ``hpo`` writes (``make dashboard``).

    python -m pipelines.dashboard [--storage journal:///studies.log] [--port 8080]

The storage defaults to the one ``hpo`` uses (``$NTMLAB_OPTUNA_STORAGE``, else the project's
``optuna.db``) and is opened the way ``hpo`` opens it, so ``journal:///`` files and a fresh,
still empty database work too. It listens on loopback only: the dashboard can edit studies.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import optuna

from pipelines.cli import run_pipeline
from pipelines.config import option
from pipelines.hpo import default_storage, open_storage, redacted


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


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("dashboard", DashboardConfig, dashboard, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
