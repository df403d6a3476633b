import math

import pytest
import torch

from datamodules.synthetic import CopyTask, make_test_set
from models.metrics import (
    BitErrorRate,
    masked_bce_loss,
    score_batches,
    scored_bits_per_sequence,
    selection_score,
    wrong_bits_per_sequence,
)
from models.ntm import NTM, NTMConfig


def _example():
    # two sequences, 3 steps, 2 bits; only the last two steps are scored
    targets = torch.tensor(
        [[[0, 0], [1, 0], [0, 1]], [[0, 0], [1, 1], [0, 0]]], dtype=torch.float32
    )
    mask = torch.tensor([[False, True, True], [False, True, True]])
    # logits > 0 predict 1. Sequence 0: one wrong bit; sequence 1: three wrong bits;
    # the unscored first step is wrong everywhere and must not count.
    logits = torch.tensor(
        [[[5.0, 5.0], [2.0, -2.0], [-3.0, -1.0]], [[5.0, 5.0], [-1.0, -1.0], [4.0, -4.0]]]
    )
    return logits, targets, mask


def test_wrong_bits_count_only_scored_steps():
    logits, targets, mask = _example()
    assert wrong_bits_per_sequence(logits, targets, mask).tolist() == [1, 3]
    assert scored_bits_per_sequence(targets, mask).tolist() == [4, 4]


def test_bit_error_rate_aggregates_over_batches():
    logits, targets, mask = _example()
    metric = BitErrorRate()
    metric.update(logits[:1], targets[:1], mask[:1])
    metric.update(logits[1:], targets[1:], mask[1:])
    scores = metric.compute()
    assert math.isclose(float(scores["bits_per_seq"]), 2.0)  # (1 + 3) / 2 sequences
    assert math.isclose(float(scores["bit_acc"]), 1 - 4 / 8)


def test_masked_bce_is_mean_over_scored_bits():
    logits, targets, mask = _example()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 1:], targets[:, 1:], reduction="mean"
    )
    assert torch.allclose(masked_bce_loss(logits, targets, mask), expected)


def test_perfect_prediction_scores_zero_errors():
    _, targets, mask = _example()
    logits = (targets * 2 - 1) * 10
    assert wrong_bits_per_sequence(logits, targets, mask).sum() == 0


def test_a_seed_makes_a_random_memory_model_score_the_same_and_keeps_the_callers_rng():
    task = CopyTask(bits=4, min_len=2, max_len=4)
    config = NTMConfig(task.input_width, task.output_width, 16, 6, memory_init="random")
    core = NTM(config)
    batches = make_test_set(task, 4, 16, 8, seed=0)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = score_batches(core, batches, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's RNG is untouched"
    torch.manual_seed(999)
    assert score_batches(core, batches, seed=7) == first
    unseeded = [score_batches(core, batches)["loss"] for _ in range(2)]
    assert unseeded[0] != unseeded[1], "the memory really is random, so the seed matters"


def _score(val_bits, long_bits=None, long_loss=None, n=1000, m=200):
    t = torch.tensor
    if long_bits is None:
        return float(selection_score(t(val_bits), t(n)))
    return float(selection_score(t(val_bits), t(n), t(long_bits), t(long_loss), t(m)))


def test_selection_without_a_long_set_is_the_validation_bits_per_seq():
    assert _score(0.25) == 0.25
    assert _score(0.0) == _score(0.0), "equal scores: the monitor keeps the earlier"


def test_selection_with_a_long_set_sums_both_and_breaks_ties_by_the_long_loss():
    # the smallest step between two sums of multiples of 1/1000 and 1/200 is 1/1000
    fewer_errors_less_sure = _score(0.0, 0.005, long_loss=5.0)
    more_errors_sure = _score(0.001, 0.005, long_loss=1e-6)
    assert fewer_errors_less_sure < more_errors_sure
    assert _score(0.0, 0.0, long_loss=1e-3) < _score(0.0, 0.0, long_loss=2e-3)
    # equal sums of bits/seq: the lower long-set loss wins
    assert _score(0.005, 0.0, 1e-3) < _score(0.0, 0.005, 2e-3)
    assert _score(0.01, 0.0, 1.0) == pytest.approx(0.01, abs=1 / (2 * 1000 * 200))
