"""Small Lightning callbacks the pipelines add to a fit."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class StopAtThreshold(pl.Callback):
    """Stop training once a validation metric reaches ``threshold`` and remember when.

    ``reached_at`` holds ``(global_step, seconds since fit start)`` of the first validation
    that met the threshold, so a benchmark can report time and sequences to converge.
    """

    def __init__(self, metric: str, threshold: float, mode: str = "min") -> None:
        self.metric, self.threshold, self.mode = metric, threshold, mode
        self.reached_at: tuple[int, float] | None = None
        self._started = 0.0

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None or self.reached_at is not None:
            return
        value = float(value)
        if value <= self.threshold if self.mode == "min" else value >= self.threshold:
            self.reached_at = (trainer.global_step, time.perf_counter() - self._started)
            trainer.should_stop = True
