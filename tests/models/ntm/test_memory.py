"""Memory read, erase/add write and initialisation."""

import pytest
import torch

from models.ntm.memory import CONSTANT_INIT, MemoryInit, read, write


def test_read_is_the_weighted_sum_of_rows():
    memory = torch.arange(12.0).view(1, 4, 3)
    weights = torch.tensor([[[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]]])
    reads = read(memory, weights)
    assert torch.allclose(reads[0, 0], 0.5 * memory[0, 0] + 0.5 * memory[0, 2])
    assert torch.allclose(reads[0, 1], memory[0, 1])


def test_full_erase_with_one_hot_weight_clears_exactly_that_row():
    memory = torch.randn(1, 5, 4)
    weights = torch.zeros(1, 1, 5)
    weights[0, 0, 2] = 1.0
    written = write(memory, weights, torch.ones(1, 1, 4), torch.zeros(1, 1, 4))
    assert torch.equal(written[0, 2], torch.zeros(4))
    keep = [0, 1, 3, 4]
    assert torch.equal(written[0, keep], memory[0, keep])


def test_write_erases_then_adds_per_the_paper():
    memory = torch.randn(2, 3, 2)
    weights = torch.softmax(torch.randn(2, 1, 3), -1)
    erase, add = torch.rand(2, 1, 2), torch.randn(2, 1, 2)
    expected = (
        memory * (1 - weights[:, 0, :, None] * erase[:, :, None, :][:, 0])
        + weights[:, 0, :, None] * add[:, 0, None, :]
    )
    assert torch.allclose(write(memory, weights, erase, add), expected)


def test_two_write_heads_multiply_erasures_and_sum_additions():
    memory = torch.randn(1, 4, 3)
    weights = torch.softmax(torch.randn(1, 2, 4), -1)
    erase, add = torch.rand(1, 2, 3), torch.randn(1, 2, 3)
    keep = (1 - weights[0, 0, :, None] * erase[0, 0]) * (1 - weights[0, 1, :, None] * erase[0, 1])
    added = weights[0, 0, :, None] * add[0, 0] + weights[0, 1, :, None] * add[0, 1]
    expected = memory[0] * keep + added
    assert torch.allclose(write(memory, weights, erase, add)[0], expected)
    # erasures commute: swapping head order changes nothing
    swapped = write(memory, weights.flip(1), erase.flip(1), add.flip(1))
    assert torch.allclose(swapped, write(memory, weights, erase, add))


def test_memory_init_modes():
    like = torch.zeros(1)
    constant_init = MemoryInit(8, 4, "constant")
    constant = constant_init(3, like)
    assert constant.shape == (3, 8, 4) and torch.all(constant == CONSTANT_INIT)
    assert constant.requires_grad, "trained from 1e-6, as in Collier & Beel's reference code"
    learned = MemoryInit(8, 4, "learned")
    assert learned(2, like).requires_grad and torch.equal(learned(2, like)[0], learned(2, like)[1])
    random = MemoryInit(8, 4, "random")
    first, second = random(2, like), random(2, like)
    assert not torch.equal(first[0], first[1]), "fresh memory per batch item"
    assert not torch.equal(first, second), "fresh memory per sequence"
    with pytest.raises(ValueError, match="unknown memory init"):
        MemoryInit(8, 4, "zeros")
