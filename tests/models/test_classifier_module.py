"""The classifier LightningModule's learning-rate schedules and population statistics hook."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models.classifier_module import ClassifierModule
from models.unfolded_lstm import UnfoldedLSTM


class _Data(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(64, 12, generator=generator)
        self.labels = torch.randint(0, 10, (64,), generator=generator)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.images, self.labels), batch_size=16, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.images, self.labels), batch_size=16)


def _fit(module: ClassifierModule, epochs: int = 2) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=_Data())
    return trainer


@pytest.mark.parametrize(("schedule", "final_fraction"), [("constant", 1.0), ("cosine", 0.0)])
def test_learning_rate_schedules(schedule, final_fraction):
    torch.manual_seed(0)
    module = ClassifierModule(nn.Linear(12, 10), lr=1e-2, lr_schedule=schedule)
    trainer = _fit(module)
    (optimizer,) = trainer.optimizers
    assert trainer.global_step == 8
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * final_fraction, abs=1e-9)


def test_validation_uses_population_statistics_of_training_batches():
    torch.manual_seed(0)
    core = UnfoldedLSTM(12, 8, depth=3)
    _fit(ClassifierModule(core, lr=1e-2, population_batches=4), epochs=1)
    # after validation the running mean of the first normalizer is the average of the four
    # training batches' means under the final weights, not a momentum-lagged mix
    images = _Data().images
    expected = (images @ core.input_weight.T).mean(0)
    torch.testing.assert_close(core.norm_x.running_mean[0], expected, rtol=1e-4, atol=1e-5)


def test_an_unknown_schedule_is_refused_when_the_module_is_built():
    with pytest.raises(ValueError, match="lr_schedule"):
        ClassifierModule(nn.Linear(12, 10), lr_schedule="linear")
