import pytorch_lightning as pl
import torch

from datamodules.synthetic import CopyTask, SyntheticDataModule
from models.lstm import LSTMSequenceModel
from models.metrics import score_batches
from models.sequence_module import SequenceModule


def test_lstm_maps_inputs_to_logits_of_output_width():
    model = LSTMSequenceModel(9, 8, hidden_size=16, num_layers=2)
    assert model(torch.zeros(4, 7, 9)).shape == (4, 7, 8)


def test_lstm_is_causal():
    torch.manual_seed(0)
    model = LSTMSequenceModel(3, 2, hidden_size=8, num_layers=2)
    inputs = torch.randn(1, 6, 3)
    changed = inputs.clone()
    changed[:, 4:] = torch.randn(1, 2, 3)
    assert torch.allclose(model(inputs)[:, :4], model(changed)[:, :4])


def test_lstm_learns_a_tiny_copy_task():
    """Lengths 1..3: the validation loss must fall from chance (ln 2 = 0.693) below 0.35."""
    pl.seed_everything(0, verbose=False)
    task = CopyTask(bits=4, min_len=1, max_len=3)
    data = SyntheticDataModule(task, batch_size=32, batches_per_epoch=300, val_size=200, seed=0)
    module = SequenceModule(
        LSTMSequenceModel(task.input_width, task.output_width, hidden_size=64, num_layers=1),
        optimizer="adam",
        lr=1e-2,
    )
    before = score_batches(module.model, data.val_batches())
    trainer = pl.Trainer(
        max_steps=300,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    after = score_batches(module.model, data.val_batches())
    assert before["loss"] > 0.65
    assert after["loss"] < 0.35, after
    assert after["bits_per_seq"] < before["bits_per_seq"] / 2
