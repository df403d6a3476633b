"""The callbacks of one sequence fit, assembled from its config and kept by name so the
pipeline can read what they measured afterwards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl

from datamodules.synthetic import SyntheticDataModule, SyntheticTask
from pipelines.common.callbacks import (
    AlignLoggingStepOnResume,
    BestCheckpoint,
    FitClock,
    LastCheckpoint,
    RecordInCheckpoint,
    StopAtThreshold,
)
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.figures import LogFigure, SequenceFigureLogger
from pipelines.sequence.setbacks import RecoverFromSetbacks, setback_rules
from pipelines.sequence.trained import CHECKPOINT_DESCRIPTION_KEY, describe
from pipelines.tracking.resume import BEST, LAST

MONITOR, MONITOR_MODE = "val_bits_per_seq", "min"
# the best checkpoint: models.metrics.selection_score (with the long validation set when any)
SELECTION = "val_selection"


class LogCurriculum(pl.Callback):
    """Log ``curriculum_max_len``, the longest training length (most items) the length
    curriculum allows at each step, so the MLflow UI shows where each start stands beside its
    training loss (a restart takes it back to the shortest range)."""

    def __init__(self, upper: Callable[[int], int]) -> None:
        self.upper = upper  # batch index -> the curriculum's longest length

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        trained = trainer.global_step - 1  # the optimizer has stepped for this batch
        module.log("curriculum_max_len", float(self.upper(trained)), batch_size=1)


@dataclass
class SequenceCallbacks:
    """Every callback of a sequence fit; the named ones are read after it."""

    checkpoint: BestCheckpoint
    last: LastCheckpoint
    clock: FitClock
    figures: SequenceFigureLogger | None  # rank 0 alone draws and logs figures
    stopper: StopAtThreshold | None
    setbacks: RecoverFromSetbacks | None
    others: list[pl.Callback] = field(default_factory=list)

    def all(self) -> list[pl.Callback]:
        # Lightning runs the checkpoints last, in this order: best, then last
        ordered = [
            self.clock,
            self.checkpoint,
            self.last,
            self.figures,
            *self.others,
        ]
        ordered += [self.stopper, self.setbacks]
        return [callback for callback in ordered if callback is not None]


def sequence_callbacks(
    config: TrainConfig,
    task: SyntheticTask,
    datamodule: SyntheticDataModule,
    checkpoints: Path,
    log_figure: LogFigure | None,
    extra: Sequence[pl.Callback] = (),
) -> SequenceCallbacks:
    """The callbacks ``config`` asks for; ``log_figure`` None on a DDP worker, which draws
    nothing, and ``extra`` the caller's (e.g. pruning; a worker gets none: a stop decided on
    rank 0 reaches it through ``AgreeOnStop``)."""
    checkpoint = BestCheckpoint(
        dirpath=checkpoints,
        filename=Path(BEST).stem,
        monitor=SELECTION,
        legacy_monitor=MONITOR,
        mode=MONITOR_MODE,
        save_last=False,
        enable_version_counter=False,
    )
    figures = None
    if log_figure is not None:
        figures = SequenceFigureLogger(
            datamodule.plot_example(), log_figure, config.trainer.plot_every_n_val
        )
    stop_at = config.trainer.stop_at
    stopper = StopAtThreshold(MONITOR, stop_at, MONITOR_MODE) if stop_at is not None else None
    setbacks = setback_rules(config, task, MONITOR)
    if setbacks is not None:
        datamodule.follow_starts(lambda: setbacks.start_step)  # a restart begins its curriculum
    others = [
        AlignLoggingStepOnResume(),
        RecordInCheckpoint(CHECKPOINT_DESCRIPTION_KEY, describe(config, task)),
        *extra,
    ]
    last = LastCheckpoint(checkpoints / LAST)
    callbacks = SequenceCallbacks(checkpoint, last, FitClock(), figures, stopper, setbacks, others)
    if datamodule.curriculum is not None:
        callbacks.others.append(LogCurriculum(datamodule.train_upper))
    return callbacks
