"""The compiled (fused) BN-LSTM time step computes what the eager step computes: outputs, every
parameter's gradient and the running statistics it records, with one graph for every step."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch._dynamo.utils import counters

from models.unfolded_lstm import RecurrentBNLSTM
from tests.models.fused_checks import assert_fused_equals_eager

pytestmark = pytest.mark.slow  # compiles a graph (~10-30 s on 2 CPU cores)


def test_fused_step_matches_the_eager_step_and_records_the_same_statistics():
    torch.manual_seed(0)
    fused = RecurrentBNLSTM(3, hidden_size=8, steps=4)
    eager = copy.deepcopy(fused)
    fused.fuse_step()
    inputs, labels = torch.randn(6, 7, 3), torch.randint(0, 10, (6,))  # 7 steps > 4 statistics

    def loss_of(model):
        logits = model(inputs)
        return logits, torch.nn.functional.cross_entropy(logits, labels)

    assert_fused_equals_eager(eager, fused, loss_of)
    for (name, b_eager), (_, b_fused) in zip(
        eager.named_buffers(), fused.named_buffers(), strict=True
    ):
        assert torch.allclose(b_fused, b_eager, atol=1e-6, rtol=0), name
    assert not torch.equal(eager.norm_c.running_var, torch.ones_like(eager.norm_c.running_var))
    # evaluation (running statistics, no grad) stays eager and agrees
    fused.eval(), eager.eval()
    graphs = counters["stats"]["unique_graphs"]
    with torch.no_grad():
        assert torch.allclose(fused(inputs), eager(inputs), atol=1e-5, rtol=0)
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_fused_bn_lstm_pickles_as_the_eager_module():
    model = RecurrentBNLSTM(3, hidden_size=8, steps=4)
    model.fuse_step()
    copied = pickle.loads(pickle.dumps(model))
    assert model.fused and not copied.fused
