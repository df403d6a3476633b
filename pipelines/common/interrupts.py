"""Ctrl-C and SIGTERM as orderly stops: finish the batch, save a checkpoint, end the run KILLED.

Outside training a signal raises ``RunInterrupted`` at once. Inside ``deferred()`` (the fit) the
first signal only records itself; ``StopOnSignal`` raises before the next batch starts, when the
previous one is stepped and logged and model, optimizer and data position agree, so the
checkpoint saved on the way out resumes exactly.
A second signal during the deferral raises immediately.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):
    """Raised for SIGINT/SIGTERM; a BaseException so generic ``except Exception`` lets it pass."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        return 128 + int(signal.Signals[self.signal_name])


class _Guard:
    def __init__(self) -> None:
        self.deferring = False
        self.pending: str | None = None

    def handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.deferring and self.pending is None:
            self.pending = name
            print(
                f"\nreceived {name}: stopping after this batch and saving a checkpoint "
                "(send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        raise RunInterrupted(name)


_guard = _Guard()


@contextmanager
def interrupt_guard() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``RunInterrupted`` for the duration (main thread only)."""
    previous = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, _guard.handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, a first signal is only recorded; ``StopOnSignal`` acts on it at a batch end."""
    _guard.deferring, _guard.pending = True, None
    try:
        yield
    finally:
        _guard.deferring = False


def pending_signal() -> str | None:
    return _guard.pending


class StopOnSignal(pl.Callback):
    """Raise ``RunInterrupted`` before the first training batch after a deferred signal, and
    save ``last.ckpt`` on the way out (through the trainer, so it is atomic and mirrored)."""

    def __init__(self, checkpoint_path: Path | None) -> None:
        self.checkpoint_path = checkpoint_path  # None: a fit that keeps no checkpoints

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # under DDP a signal may reach one process (SIGTERM to rank 0) or reach them in
        # different batches (Ctrl-C): every process stops at the same batch, or the others
        # would wait for it forever in the next gradient all-reduce
        pending = _guard.pending is not None
        if trainer.world_size > 1:
            pending = trainer.strategy.reduce_boolean_decision(pending, all=False)
        if pending:
            raise RunInterrupted(_guard.pending or "SIGTERM")  # a peer was signalled

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, error: BaseException):
        # Lightning raises SIGTERMException at a batch end too (its own SIGTERM notifier)
        if self.checkpoint_path is not None and isinstance(
            error, RunInterrupted | SIGTERMException
        ):
            trainer.save_checkpoint(self.checkpoint_path)


def keep_lightning_off_signals(trainer: pl.Trainer) -> None:
    """Under DDP, leave SIGTERM to this module's guard alone.

    Lightning's SIGTERM notifier broadcasts from rank 0 *inside the signal handler*, while the
    other processes are in some other collective (the gradient all-reduce): the ranks then wait
    on each other forever (seen with 2 gloo processes). The guard instead records the signal,
    and ``StopOnSignal`` stops every process at the same batch start with one agreed decision.
    A single process keeps Lightning's handler, which composes with the guard there.
    """
    if trainer.world_size > 1:
        trainer._signal_connector.register_signal_handlers = lambda: None
