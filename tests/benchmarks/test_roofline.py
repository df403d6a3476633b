"""The roofline benchmark's counts: each checked against the arithmetic of a known op."""

import pytest
import torch

from benchmarks.roofline import FLOAT_BYTES, count, place

BATCH, IN, OUT = 8, 30, 20


def test_a_linear_layer_counts_its_gemms_forward_and_backward():
    """Forward ``2 B I O``; backward ``2 B I O`` for the weight and as much again for the input
    when the input needs a gradient."""
    layer = torch.nn.Linear(IN, OUT)
    gemm = 2 * BATCH * IN * OUT

    def step(inputs):
        layer(inputs).sum().backward()

    assert count(step, torch.randn(BATCH, IN))["matmul_flops"] == 2 * gemm
    assert count(step, torch.randn(BATCH, IN, requires_grad=True))["matmul_flops"] == 3 * gemm


def test_an_elementwise_op_reads_both_operands_and_writes_one_result():
    a, b = torch.rand(1000), torch.rand(1000)
    counted = count(torch.add, a, b)
    assert counted == {"matmul_flops": 0, "element_ops": 1000, "bytes": 3 * 1000 * FLOAT_BYTES}


def test_an_in_place_op_reads_and_writes_its_operand():
    a, b = torch.rand(1000), torch.rand(1000)
    assert count(lambda: a.add_(b))["bytes"] == 3 * 1000 * FLOAT_BYTES


def test_views_move_nothing_and_a_broadcast_reads_only_its_stored_elements():
    matrix = torch.rand(50, 40)
    assert count(lambda: matrix.t().unsqueeze(0))["bytes"] == 0
    row = torch.rand(1, 40)
    counted = count(lambda: matrix + row.expand(50, 40))
    assert counted["bytes"] == (2 * 50 * 40 + 40) * FLOAT_BYTES
    assert counted["element_ops"] == 50 * 40


def test_the_binding_ceiling_is_the_lower_of_compute_and_bandwidth():
    """At 0.5 FLOP/B a 100 GB/s level bounds at 50 GFLOP/s under a 200 GFLOP/s peak; at
    8 FLOP/B the peak binds."""
    ceilings = {
        "gemm_flop_per_s": 200e9,
        "l2_bytes_per_s": 100e9,
        "l3_bytes_per_s": 100e9,
        "dram_bytes_per_s": 10e9,
    }
    cost = {"matmul_flops": 1e6, "element_ops": 0.0, "bytes": 2e6, "state_bytes": 1.25e5}
    placed = place(1000.0, cost, ceilings)  # 1 GFLOP/s achieved
    assert placed["gflop_per_s"] == pytest.approx(1.0)
    assert placed["share_of_l2_roof_at_bytes"] == pytest.approx(1 / 50)
    assert placed["share_of_dram_roof_at_bytes"] == pytest.approx(1 / 5)
    assert placed["share_of_l2_roof_at_state_bytes"] == pytest.approx(1 / 200)
