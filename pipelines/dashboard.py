"""Optuna's dashboard over the studies ``hpo`` writes (``make dashboard``).

    python -m pipelines.dashboard [--storage journal:///studies.log] [--port 8080]

The storage defaults to the one ``hpo`` uses (``$NTMLAB_OPTUNA_STORAGE``, else the project's
``optuna.db``) and is opened the way ``hpo`` opens it, so ``journal:///`` files and a fresh,
still empty database work too. It listens on loopback only: the dashboard can edit studies.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.search.dashboard import DashboardConfig, dashboard

CONFIG = DashboardConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("dashboard", CONFIG, dashboard, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
