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


def test_forget_bias_sets_the_forget_gate_of_every_layer():
    """With zero input and state the forget gate of each layer is sigmoid(bias) exactly: the
    two PyTorch biases of gate f (rows H..2H, gate order i, f, g, o) sum to the bias."""
    model = LSTMSequenceModel(5, 2, hidden_size=6, num_layers=3, forget_bias=1.0)
    lstm, hidden = model.lstm, 6
    for layer in range(3):
        bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert torch.equal(bias[hidden : 2 * hidden], torch.ones(hidden))
        others = torch.cat([bias[:hidden], bias[2 * hidden :]])
        assert others.abs().max() <= 2 / hidden**0.5  # PyTorch's own start elsewhere
    # one step of layer 0 with zero input from a known cell state c0 and the input gate shut:
    # c1 = f * c0 + i * g = f * c0, so c1 / c0 reads the forget gate back
    c0 = torch.full((1, 1, hidden), 2.0)
    h0 = torch.zeros(1, 1, hidden)
    single = torch.nn.LSTM(5, hidden, batch_first=True)
    single.load_state_dict({k: v for k, v in lstm.state_dict().items() if k.endswith("_l0")})
    with torch.no_grad():
        single.bias_ih_l0[:hidden] = -1e4  # input gate shut: c = f * c0
        _, (_, c1) = single(torch.zeros(1, 1, 5), (h0, c0))
    assert torch.allclose(c1, 2.0 * torch.sigmoid(torch.tensor(1.0)).expand_as(c1))


def test_forget_bias_none_keeps_pytorchs_start():
    torch.manual_seed(3)
    default = LSTMSequenceModel(4, 2, hidden_size=8, num_layers=1)
    torch.manual_seed(3)
    unset = LSTMSequenceModel(4, 2, hidden_size=8, num_layers=1, forget_bias=None)
    assert all(
        torch.equal(a, b)
        for a, b in zip(default.state_dict().values(), unset.state_dict().values(), strict=True)
    )
