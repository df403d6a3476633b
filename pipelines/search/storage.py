"""Where a study lives: SQLite for one worker, a journal file for workers on one machine,
PostgreSQL (any RDB) across machines; URLs are redacted before they are logged."""

from __future__ import annotations

import os
import time

from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pipelines.common.config import ConfigError
from pipelines.tracking.store import PROJECT_ROOT

STORAGE_ENV = "NTMLAB_OPTUNA_STORAGE"  # the storage an empty --storage means
SCHEMA_ATTEMPTS = 3


def default_storage() -> str:
    """``$NTMLAB_OPTUNA_STORAGE``, else the project's ``sqlite:///<root>/optuna.db``."""
    return os.environ.get(STORAGE_ENV) or f"sqlite:///{PROJECT_ROOT / 'optuna.db'}"


def open_storage(url: str, heartbeat_interval: int = 60, max_retry: int = 3):
    """The storage object for ``url`` (``journal:///file`` or an RDB URL), with heartbeats and
    retries on an RDB; unreachable or malformed is a ConfigError."""
    if url.startswith("journal:///"):
        path = url[len("journal://") :]
        try:
            return JournalStorage(JournalFileBackend(path))
        except OSError as error:
            raise ConfigError(f"--storage: cannot open journal file {path} ({error})") from None
    last_error: Exception | None = None
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=2 * heartbeat_interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry),
                engine_kwargs={"pool_pre_ping": True},
            )
        except (ArgumentError, ValueError, ImportError) as error:
            last_error = error
            break
        except SQLAlchemyError as error:
            # workers starting together race to create the schema of a fresh database; the
            # loser sees "duplicate key" once and succeeds on the next try
            last_error = error
            if "duplicate" not in str(error) and "already exists" not in str(error):
                break
            time.sleep(0.5 * (attempt + 1))
    text = str(last_error).strip()
    reason = text.splitlines()[0] if text else type(last_error).__name__
    raise ConfigError(f"--storage: cannot open {redacted(url)} ({reason[:200]})")


def redacted(url: str) -> str:
    """The storage URL without its password, for logs and MLflow params."""
    if url.startswith("journal:///"):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
