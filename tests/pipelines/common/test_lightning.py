"""The behaviours of pytorch-lightning this project depends on, pinned: an upgrade that changes
one fails here, not in a user's run. pyproject.toml pins the tested minor range."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from pipelines.common.callbacks import (
    AlignLoggingStepOnResume,
    BestCheckpoint,
    LastCheckpoint,
)
from pipelines.common.interrupts import keep_lightning_off_signals
from pipelines.tracking.checkpoints import AtomicCheckpointIO, load_checkpoint


class Plateau(pl.LightningModule):
    """A linear model whose validation score never improves after the first validation."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("score", 1.0)  # the same at every validation: one best, then ties

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)


def fit(
    tmp_path: Path,
    callbacks,
    max_steps: int = 12,
    module: pl.LightningModule | None = None,
    logger=False,
    **kwargs,
) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=max_steps,
        val_check_interval=4,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        **kwargs,
    )
    trainer.fit(module or Plateau(), train_dataloaders=loader(), val_dataloaders=loader())
    return trainer


def test_the_installed_lightning_is_the_pinned_minor():
    assert importlib.metadata.version("pytorch-lightning").startswith("2.6.")


def test_model_checkpoint_save_last_skips_a_validation_without_a_new_best(tmp_path):
    """Why LastCheckpoint exists: Lightning 2.6 writes last.ckpt only when a top-k checkpoint
    was saved. If this starts failing, Lightning went back to saving it at every validation."""
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="score", save_last=True)
    fit(tmp_path, [checkpoint])
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 4  # the first validation


def test_last_checkpoint_holds_the_last_validation_and_the_end_of_training(tmp_path):
    best = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="score", save_last=False)
    last = LastCheckpoint(tmp_path / "last.ckpt")
    fit(tmp_path, [last, best], max_steps=14)  # listed first, still run after best
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 14  # after validation 12
    assert load_checkpoint(tmp_path / "best.ckpt")["global_step"] == 4


def test_checkpoint_callbacks_run_last_in_their_own_order(tmp_path):
    """LastCheckpoint saves the best checkpoint's state of the same validation only because
    Lightning moves every Checkpoint to the end of the callbacks, keeping their order."""
    best = ModelCheckpoint(dirpath=tmp_path, monitor="score")
    last = LastCheckpoint(tmp_path / "last.ckpt")
    other = AlignLoggingStepOnResume()
    trainer = fit(tmp_path, [best, other, last], max_steps=4)
    ordered = [c for c in trainer.callbacks if c in (best, other, last)]
    assert ordered == [other, best, last]


def test_best_checkpoint_keeps_the_state_key_of_the_metric_it_monitored_before():
    legacy = ModelCheckpoint(monitor="val_bits_per_seq", mode="min")
    best = BestCheckpoint(monitor="val_selection", legacy_monitor="val_bits_per_seq", mode="min")
    assert best.state_key == legacy.state_key


def test_trainer_save_checkpoint_goes_through_the_checkpoint_io_plugin(tmp_path):
    saved: list[Path] = []
    trainer = fit(tmp_path, [], max_steps=2, plugins=[AtomicCheckpointIO(saved.append)])
    trainer.save_checkpoint(tmp_path / "probe.ckpt")
    assert saved == [tmp_path / "probe.ckpt"]
    assert load_checkpoint(saved[0])["global_step"] == 2


def test_the_signal_connector_registers_handlers_through_the_hook_we_replace(tmp_path):
    """Under DDP the pipelines replace ``_signal_connector.register_signal_handlers``; the
    Trainer must still call it (by that name) at fit start."""
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False)
    calls = []
    trainer._signal_connector.register_signal_handlers = lambda: calls.append(True)
    trainer.fit(Plateau(), train_dataloaders=loader())
    assert calls == [True]
    single = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False)
    hook = single._signal_connector.register_signal_handlers
    keep_lightning_off_signals(single)  # a single process keeps Lightning's handler
    assert single._signal_connector.register_signal_handlers == hook


def test_the_logging_counter_that_the_resume_realigns_exists(tmp_path):
    trainer = fit(tmp_path, [], max_steps=3)
    assert trainer.fit_loop.epoch_loop._batches_that_stepped == 3


def test_lightning_raises_its_sigterm_exception_type():
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    assert issubclass(SIGTERMException, BaseException)


def test_the_timer_reports_training_time(tmp_path):
    from pytorch_lightning.callbacks import Timer
    from pytorch_lightning.trainer.states import RunningStage

    timer = Timer()
    fit(tmp_path, [timer], max_steps=2)
    assert timer.time_elapsed(RunningStage.TRAINING) > 0


class StepLogger(pl.loggers.logger.Logger):
    """Records the metrics each ``log_metrics`` call hands a logger."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[dict[str, float]] = []

    name, version = "steps", 0

    @property
    def experiment(self):
        return None

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.logged.append(dict(metrics))


class FlagsLogging(Plateau):
    """Logs its step count at every step and notes where Lightning says it will log."""

    def __init__(self) -> None:
        super().__init__()
        self.flagged: list[int] = []

    def training_step(self, batch, batch_idx):
        if self.trainer._logger_connector.should_update_logs:
            self.flagged.append(self.global_step)
        self.log("seen_step", float(self.global_step))
        return super().training_step(batch, batch_idx)


def test_should_update_logs_in_a_training_step_names_the_steps_the_loggers_receive(tmp_path):
    """SequenceModule calls ``self.log`` for training metrics only where this flag is set
    (each call costs a compiled step a few percent): the flag must mark exactly the steps
    whose values reach the loggers."""
    logger = StepLogger()
    module = FlagsLogging()
    fit(tmp_path, [], max_steps=12, module=module, logger=logger, log_every_n_steps=5)
    received = [int(m["seen_step"]) for m in logger.logged if "seen_step" in m]
    assert received == [4, 9]  # the 5th and 10th batches
    assert module.flagged == received
