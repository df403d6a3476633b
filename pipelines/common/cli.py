"""The thin command-line shell every pipeline shares: parse, validate, run, exit code.

Bad input (``ConfigError``, an unreadable checkpoint) prints one ``<pipeline>: error: ...`` line
and exits 2; if ``mlflow run`` had already started a run, that run ends FAILED with the message
as a tag. An unreachable tracking server exits 3 within seconds. SIGINT/SIGTERM exit 128+signal
after the run ended KILLED with a checkpoint saved.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from pipelines.common.config import ConfigError, parse_config
from pipelines.common.interrupts import RunInterrupted
from pipelines.tracking.checkpoints import CheckpointError
from pipelines.tracking.runs import fail_inherited_run
from pipelines.tracking.store import TrackingRejected, TrackingUnavailable

BAD_INPUT_EXIT = 2
TRACKING_UNAVAILABLE_EXIT = 3


def run_pipeline(
    name: str,
    config_type: type,
    pipeline: Callable[[Any], Any],
    argv: list[str] | None,
    description: str | None,
) -> int:
    """Parse ``argv`` into ``config_type`` and run ``pipeline`` on it; return the exit code."""
    try:
        config = parse_config(config_type, argv, description or "")
        pipeline(config)
    except (ConfigError, CheckpointError) as error:
        message = f"{name}: error: {error}"
        print(message, file=sys.stderr)
        fail_inherited_run(message)
        return BAD_INPUT_EXIT
    except TrackingUnavailable as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return TRACKING_UNAVAILABLE_EXIT
    except TrackingRejected as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as interrupted:
        print(f"{name}: {interrupted}; the run ended KILLED", file=sys.stderr)
        return interrupted.exit_code
    return 0
