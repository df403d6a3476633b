"""Lightning's MLflow logger, bound to a run the pipeline opened and to its outbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from pipelines.tracking.outbox import TrackingOutbox
from pipelines.tracking.store import tracking_uri


class RunBoundLogger(MLFlowLogger):
    """An MLFlowLogger that logs into an existing run and leaves ending it to the pipeline.

    Lightning's logger terminates the run in ``finalize``; the pipeline still logs the model,
    figures and test metrics after ``fit``, and owns the final status.
    """

    def __init__(self, run_id: str, outbox: TrackingOutbox) -> None:
        client = MlflowClient(tracking_uri())
        experiment_id = client.get_run(run_id).info.experiment_id
        super().__init__(
            experiment_name=client.get_experiment(experiment_id).name,
            tracking_uri=tracking_uri(),
            run_id=run_id,
            log_model=False,
        )
        self.outbox = outbox
        self._trainer: Any = None

    def use_steps_of(self, trainer: Any) -> None:
        """Log at the trainer's ``global_step`` (optimizer steps done).

        Lightning's own logger step lags it by one at an epoch's end and not after a resume, so
        a resumed run would shift its axis; the global step is restored exactly.
        """
        self._trainer = trainer

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Through the outbox: a tracking outage delays these, never loses or blocks them."""
        if self._trainer is not None:
            step = self._trainer.global_step
        self.outbox.log_metrics(metrics, step or 0)

    def finalize(self, status: str = "success") -> None:
        """Leave the run open; the pipeline ends it."""

    def log_hyperparams(self, params: Any) -> None:
        """Params are logged once, flattened, by the pipeline."""
