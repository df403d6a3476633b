"""Train one model on one task and record everything in MLflow.

    python -m pipelines.train --model lstm --task copy --max_steps 2000

Parse and validate the config, open (or continue) the MLflow run, build data and model, fit,
then log the best checkpoint's scores at the test lengths, figures, checkpoints and the model.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import mlflow
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from models.metrics import score_batches
from pipelines.callbacks import StopAtThreshold
from pipelines.cli import run_pipeline
from pipelines.config import flatten_params, to_dict
from pipelines.factory import count_parameters, make_datamodule, make_module, make_task
from pipelines.plots import SequenceFigureLogger
from pipelines.tracking import RunBoundLogger, tracked_run
from pipelines.train_config import TrainConfig

MONITOR, MONITOR_MODE = "val_bits_per_seq", "min"


@dataclass
class TrainResult:
    run_id: str
    best_score: float
    steps: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


def _devices(text: str) -> int | str | list[int]:
    """Lightning accepts ``auto``, a count, or a list of indices."""
    if text.isdigit():
        return int(text)
    if "," in text:
        return [int(part) for part in text.split(",") if part.strip()]
    return text


def build_trainer(
    config: TrainConfig, logger, callbacks: Sequence[pl.Callback], workdir: Path
) -> pl.Trainer:
    run = config.trainer
    return pl.Trainer(
        max_steps=run.max_steps,
        max_epochs=-1,
        max_time=timedelta(minutes=run.max_minutes),
        logger=logger,
        callbacks=list(callbacks),
        log_every_n_steps=run.log_every_n_steps,
        accelerator=run.accelerator,
        devices=_devices(run.devices),
        num_nodes=run.num_nodes,
        strategy=run.strategy,
        precision=run.precision,
        default_root_dir=workdir,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )


def _log_model(module: pl.LightningModule, config: TrainConfig, task, directory: Path) -> None:
    """``model/``: core weights plus the config that rebuilds the core (weights_only loadable)."""
    model_dir = directory / "model"
    model_dir.mkdir()
    torch.save(module.model.state_dict(), model_dir / "weights.pt")
    description = {
        "config": to_dict(config),
        "input_width": task.input_width,
        "output_width": task.output_width,
    }
    (model_dir / "config.json").write_text(json.dumps(description, indent=2))
    mlflow.log_artifacts(str(model_dir), artifact_path="model")


def _restore_best(module: pl.LightningModule, checkpoint: ModelCheckpoint) -> None:
    if checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(state["state_dict"])


def train(
    config: TrainConfig, callbacks: Sequence[pl.Callback] = (), nested: bool = False
) -> TrainResult:
    """Fit ``config`` in a tracked MLflow run; extra ``callbacks`` (e.g. pruning) join the fit."""
    task = make_task(config.data)
    datamodule = make_datamodule(config, task)
    experiment = config.experiment_name or config.data.task
    run_name = f"{config.model.name}-{config.data.task}"
    with tracked_run(experiment, run_name, {"ntmlab.pipeline": "train"}, nested=nested) as run:
        mlflow.log_params(flatten_params(config))
        pl.seed_everything(config.seed, workers=True, verbose=False)
        module = make_module(config, task)
        mlflow.log_metric("param_count", count_parameters(module.model), step=0)
        with tempfile.TemporaryDirectory(prefix="ntmlab-") as tmp:
            workdir = Path(tmp)
            checkpoint = ModelCheckpoint(
                dirpath=workdir / "checkpoints",
                filename="best",
                monitor=MONITOR,
                mode=MONITOR_MODE,
                save_last=True,
                enable_version_counter=False,
            )
            figures = SequenceFigureLogger(
                datamodule.plot_example(), mlflow.log_figure, config.trainer.plot_every_n_val
            )
            fit_callbacks: list[pl.Callback] = [checkpoint, figures, *callbacks]
            stopper = None
            if config.trainer.stop_at is not None:
                stopper = StopAtThreshold(MONITOR, config.trainer.stop_at, MONITOR_MODE)
                fit_callbacks.append(stopper)
            trainer = build_trainer(config, RunBoundLogger(run), fit_callbacks, workdir)
            started = time.perf_counter()
            trainer.fit(module, datamodule=datamodule)
            seconds = time.perf_counter() - started
            if not trainer.is_global_zero:
                return TrainResult(run.info.run_id, float("nan"), trainer.global_step, seconds)

            steps = trainer.global_step
            sequences = steps * config.data.batch_size
            metrics = {
                "train_time_s": seconds,
                "sequences_seen": float(sequences),
                "train_seq_per_s": sequences / max(seconds, 1e-9),
            }
            if stopper is not None:
                metrics["reached_stop_at"] = float(stopper.reached_at is not None)
                if stopper.reached_at is not None:
                    reached_step, reached_seconds = stopper.reached_at
                    metrics["steps_to_stop_at"] = float(reached_step)
                    metrics["seconds_to_stop_at"] = reached_seconds
                    metrics["sequences_to_stop_at"] = float(reached_step * config.data.batch_size)
            _restore_best(module, checkpoint)
            device = module.device
            best = score_batches(module.model, datamodule.val_batches(), device)
            metrics["best_val_bits_per_seq"] = best["bits_per_seq"]
            metrics["best_val_bit_acc"] = best["bit_acc"]
            for length in config.data.test_lengths:
                scores = score_batches(module.model, datamodule.test_batches(length), device)
                metrics[f"bit_acc_L{length}"] = scores["bit_acc"]
                metrics[f"bits_per_seq_L{length}"] = scores["bits_per_seq"]
            mlflow.log_metrics(metrics, step=steps)
            figures.log_final(module, steps)
            for path in (checkpoint.best_model_path, checkpoint.last_model_path):
                if path:
                    mlflow.log_artifact(path, artifact_path="checkpoints")
            _log_model(module, config, task, workdir)
        return TrainResult(run.info.run_id, best["bits_per_seq"], steps, seconds, metrics)


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("train", TrainConfig, train, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
