"""The compiled (fused) NTM step computes what the eager step computes: outputs and every
parameter's gradient, for every controller, several head counts and shift ranges."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch._dynamo.utils import counters

from models.ntm import NTM, NTMConfig
from tests.models.fused_checks import assert_fused_equals_eager

pytestmark = pytest.mark.slow  # each case compiles a graph (~10-30 s on 2 CPU cores)

CASES = [
    ("lstm", 1, 1, 1),
    ("dense", 2, 1, 2),
    ("double_dense", 1, 2, 0),
]


@pytest.mark.parametrize(
    ("controller", "reads", "writes", "shift"),
    CASES,
    ids=[f"{c[0]}-{c[1]}r{c[2]}w-shift{c[3]}" for c in CASES],
)
def test_fused_step_matches_the_eager_step(controller, reads, writes, shift):
    torch.manual_seed(0)
    config = NTMConfig(
        input_size=5,
        output_size=4,
        memory_slots=8,
        memory_width=6,
        read_heads=reads,
        write_heads=writes,
        controller=controller,
        controller_size=12,
        shift_range=shift,
    )
    fused = NTM(config)
    eager = copy.deepcopy(fused)
    fused.fuse_step()
    inputs = torch.rand(3, 7, 5)
    targets = torch.rand(3, 7, 4)

    def loss_of(model):
        logits = model(inputs)
        return logits, torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)

    assert_fused_equals_eager(eager, fused, loss_of)
    # another length reuses the graph (shapes depend on the batch size only), and a
    # different length gives the same numbers as eager too
    graphs = counters["stats"]["unique_graphs"]
    longer = torch.rand(3, 11, 5)
    assert torch.allclose(fused(longer), eager(longer), atol=1e-5, rtol=0)
    assert counters["stats"]["unique_graphs"] == graphs, "no recompile for another length"


def test_a_batch_of_one_sequence_compiles_one_graph_for_every_length():
    """A ``[1, T, I]`` batch is contiguous whatever its size-1 dimension's stride, so its time
    steps' strides followed T: without fresh row-major copies every length compiled a graph
    of its own (Graves et al. train on one sequence at a time)."""
    torch.manual_seed(0)
    config = NTMConfig(input_size=5, output_size=4, memory_slots=8, memory_width=6)
    fused = NTM(config)
    eager = copy.deepcopy(fused)
    fused.fuse_step()
    graphs = counters["stats"]["unique_graphs"]
    for length in (3, 5, 8):
        inputs = torch.rand(1, length, 5)
        assert torch.allclose(fused(inputs), eager(inputs), atol=1e-5, rtol=0)
    assert counters["stats"]["unique_graphs"] == graphs + 1, "one graph for every length"


def test_a_fused_ntm_pickles_and_copies_as_the_eager_module():
    config = NTMConfig(input_size=5, output_size=4, memory_slots=8, memory_width=6)
    model = NTM(config)
    model.fuse_step()
    assert model.fused
    copied = pickle.loads(pickle.dumps(model))
    assert not copied.fused and not copy.deepcopy(model).fused
    with torch.no_grad():  # evaluation stays eager: no compile for another batch size
        inputs = torch.rand(2, 4, 5)
        assert torch.equal(model(inputs), copied(inputs))
