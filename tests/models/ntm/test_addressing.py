"""Addressing math (Graves et al. 2014, 3.3) on hand-made inputs."""

import pytest
import torch
import torch.nn.functional as F

from models.ntm.addressing import (
    COSINE_EPS,
    address,
    content_log_weights,
    cosine_similarity,
    interpolate_log,
    sharpen_log,
    shift_log,
)


@pytest.fixture(autouse=True)
def _double_precision():
    """Exact comparisons need float64; restore the default so other test modules keep float32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _log(weights):
    return torch.log(torch.as_tensor(weights, dtype=torch.float64))


def _one_hot(index, slots=6):
    return F.one_hot(torch.tensor([[index]]), slots).double()  # [1,1,N]


def _shift_dist(offset, shift_range=1):
    dist = torch.zeros(1, 1, 2 * shift_range + 1)
    dist[..., offset + shift_range] = 1.0
    return dist


def test_cosine_similarity_matches_definition():
    keys = torch.tensor([[[1.0, 0.0, 0.0]]])
    memory = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0]]])
    sims = cosine_similarity(keys, memory)[0, 0]
    norms = torch.tensor([2.0, 3.0, 2**0.5])  # |k| = 1
    expected = torch.tensor([2.0, 0.0, 1.0]) / (norms + COSINE_EPS)
    torch.testing.assert_close(sims, expected)
    assert torch.allclose(sims, torch.tensor([1.0, 0.0, 2**-0.5]), atol=1e-3)


def test_an_unwritten_row_scores_near_zero_with_a_bounded_gradient():
    """Rows still at the 1e-6 starting memory: the eps keeps d K / d M_n near |k| / eps
    instead of 1 / |M_n| ~ 2e5, the gradient spike that used to wreck training runs."""
    keys = torch.tensor([[[0.6, -0.8, 0.0, 0.0]]])
    memory = torch.full((1, 2, 4), 1e-6, requires_grad=True)
    sims = cosine_similarity(keys, memory)
    assert sims.abs().max() < 1e-2
    sims.sum().backward()
    assert memory.grad.norm() < 2e3  # measured 1.4e3; 7e5 with eps 1e-8


def test_content_weights_select_the_matching_row_as_beta_grows():
    torch.manual_seed(0)
    memory = torch.randn(1, 8, 5)
    key = memory[:, 3:4].clone()
    previous_peak = 0.0
    for beta in (1.0, 10.0, 100.0, 1000.0):
        weights = content_log_weights(key, torch.tensor([[beta]]), memory).exp()[0, 0]
        assert torch.isclose(weights.sum(), torch.tensor(1.0))
        assert weights.argmax() == 3
        assert weights[3] >= previous_peak
        previous_peak = float(weights[3])
    assert previous_peak > 0.999


def test_content_weights_with_beta_zero_are_uniform():
    memory = torch.randn(1, 4, 3)
    weights = content_log_weights(torch.randn(1, 1, 3), torch.zeros(1, 1), memory).exp()
    assert torch.allclose(weights, torch.full((1, 1, 4), 0.25))


def test_interpolation_is_the_gated_mixture():
    content = torch.tensor([[[0.7, 0.2, 0.1]]])
    previous = torch.tensor([[[0.0, 0.5, 0.5]]])
    gate_logit = torch.tensor([[0.3]])
    g = torch.sigmoid(gate_logit)[..., None]
    expected = g * content + (1 - g) * previous
    got = interpolate_log(_log(content), _log(previous), gate_logit).exp()
    assert torch.allclose(got, expected)


def test_shift_plus_one_rotates_a_one_hot_with_wraparound():
    for position in range(6):
        shifted = shift_log(_log(_one_hot(position)), _log(_shift_dist(+1))).exp()
        assert torch.allclose(shifted, _one_hot((position + 1) % 6))
    back = shift_log(_log(_one_hot(0)), _log(_shift_dist(-1))).exp()
    assert torch.allclose(back, _one_hot(5))
    stay = shift_log(_log(_one_hot(2)), _log(_shift_dist(0))).exp()
    assert torch.allclose(stay, _one_hot(2))


def test_shift_is_circular_convolution_for_a_spread_distribution():
    weights = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    shift = torch.tensor([[[0.2, 0.5, 0.3]]])  # offsets -1, 0, +1
    got = shift_log(_log(weights), _log(shift)).exp()[0, 0]
    w = weights[0, 0]
    expected = torch.stack(
        [0.2 * w[(i + 1) % 4] + 0.5 * w[i] + 0.3 * w[(i - 1) % 4] for i in range(4)]
    )
    assert torch.allclose(got, expected)
    assert torch.isclose(got.sum(), torch.tensor(1.0))


def test_shift_ranges_zero_and_two():
    weights = torch.softmax(torch.randn(1, 1, 7), -1)
    assert torch.allclose(shift_log(weights.log(), torch.zeros(1, 1, 1)).exp(), weights)
    plus_two = shift_log(weights.log(), _log(_shift_dist(+2, shift_range=2))).exp()
    assert torch.allclose(plus_two, weights.roll(2, dims=-1))
    minus_one = shift_log(weights.log(), _log(_shift_dist(-1, shift_range=2))).exp()
    assert torch.allclose(minus_one, weights.roll(-1, dims=-1))


def test_sharpen_with_gamma_one_leaves_weights_unchanged():
    weights = torch.tensor([[[0.1, 0.6, 0.3]]])
    got = sharpen_log(_log(weights), torch.ones(1, 1)).exp()
    assert torch.allclose(got, weights)


def test_large_gamma_approaches_one_hot_without_nan():
    weights = torch.tensor([[[0.1, 0.6, 0.3]]])
    for gamma in (10.0, 1e3, 1e6):
        got = sharpen_log(_log(weights), torch.tensor([[gamma]])).exp()
        assert torch.isfinite(got).all()
        assert torch.isclose(got.sum(), torch.tensor(1.0))
    assert torch.allclose(got, torch.tensor([[[0.0, 1.0, 0.0]]]))
    # float32 weights as peaked as e^-200 still sharpen to finite values
    tiny = torch.tensor([[[-200.0, 0.0, -300.0]]], dtype=torch.float32)
    assert torch.isfinite(sharpen_log(tiny, torch.tensor([[50.0]]))).all()


def test_full_addressing_weights_are_a_distribution():
    torch.manual_seed(1)
    batch, heads, slots, width = 3, 2, 10, 4
    memory = torch.randn(batch, slots, width)
    previous = torch.log_softmax(torch.randn(batch, heads, slots), dim=-1)
    weights = address(
        memory,
        previous,
        torch.randn(batch, heads, width),
        torch.rand(batch, heads) * 5,
        torch.randn(batch, heads),
        torch.log_softmax(torch.randn(batch, heads, 3), dim=-1),
        1 + torch.rand(batch, heads) * 3,
    ).exp()
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(batch, heads))


def test_gradcheck_addressing():
    torch.manual_seed(2)
    batch, heads, slots, width = 2, 2, 5, 3
    inputs = (
        torch.randn(batch, slots, width, requires_grad=True),
        torch.log_softmax(torch.randn(batch, heads, slots), -1).detach().requires_grad_(),
        torch.randn(batch, heads, width, requires_grad=True),
        (torch.rand(batch, heads) * 3).requires_grad_(),
        torch.randn(batch, heads, requires_grad=True),
        torch.log_softmax(torch.randn(batch, heads, 3), -1).detach().requires_grad_(),
        (1 + torch.rand(batch, heads)).requires_grad_(),
    )
    assert torch.autograd.gradcheck(address, inputs)
