"""Checkpoints that a kill cannot corrupt, and reading them back with a clear error.

A checkpoint is first written to a temporary file in the same directory, flushed to disk, then
renamed over the old one: ``os.replace`` is atomic on POSIX, so ``last.ckpt`` is always either
the previous good checkpoint or the new complete one, never half of one.
"""

from __future__ import annotations

import pickle
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from pipelines.common.atomic_files import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, or not a checkpoint of this project."""


def atomic_torch_save(payload: Any, path: Path) -> None:
    """``torch.save`` to ``path`` via temp file + fsync + rename."""
    atomic_write(Path(path), lambda stream: torch.save(payload, stream))


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True``, or raise ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({reason})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint (no state_dict)")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that saves atomically and reports each saved file.

    ``on_saved(path)`` lets the pipeline mirror the file to the run's artifacts, so an
    interrupted run can be resumed from another machine that shares the tracking server.
    """

    def __init__(self, on_saved: Callable[[Path], None] | None = None) -> None:
        super().__init__()
        self.on_saved = on_saved
        self.seconds = 0.0  # spent writing checkpoints in this session

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        started = time.perf_counter()
        atomic_torch_save(checkpoint, Path(path))
        self.seconds += time.perf_counter() - started
        if self.on_saved is not None:  # the mirror's queueing counts as logging
            self.on_saved(Path(path))

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path)
