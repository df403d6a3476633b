"""The thin command-line shell every pipeline shares: parse, validate, run, exit code.

Bad input (``ConfigError``) prints one ``<pipeline>: error: ...`` line and exits 2; if
``mlflow run`` had already started a run, that run ends FAILED with the message as a tag.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from pipelines.config import ConfigError, parse_config
from pipelines.tracking import fail_inherited_run

BAD_INPUT_EXIT = 2


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
    except ConfigError as error:
        message = f"{name}: error: {error}"
        print(message, file=sys.stderr)
        fail_inherited_run(message)
        return BAD_INPUT_EXIT
    return 0
