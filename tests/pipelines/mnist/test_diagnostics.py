"""Gradient-ratio summaries behind the unfolded-LSTM depth question."""

import math

import pytest

from pipelines.mnist.diagnostics import gradient_ratio_summary


def test_ratios_take_the_last_step_the_median_over_training_and_a_per_weight_rms():
    history = [(0, [8.0, 4.0, 1.0]), (50, [30.0, 2.0, 1.0]), (100, [2.0, 1.0, 0.5])]
    sizes = [400 * 784, 400 * 100, 400 * 100]
    summary = gradient_ratio_summary(history, sizes)
    assert summary["grad_norm_ratio_first_last"] == pytest.approx(4.0)
    assert summary["grad_norm_ratio_first_last_median"] == pytest.approx(8.0)
    rms_first, rms_last = 8.0 / math.sqrt(sizes[0]), 1.0 / math.sqrt(sizes[-1])
    assert summary["grad_rms_ratio_first_last_median"] == pytest.approx(rms_first / rms_last)
    assert summary["grad_norm_ratio_first_last_end_median"] == pytest.approx(4.0)  # 1 of 3 points


def test_the_end_median_covers_the_last_tenth_of_the_points():
    ratios = [1.0] * 18 + [5.0, 7.0]  # 20 points: the last tenth is the last two
    history = [(step, [ratio, 1.0]) for step, ratio in enumerate(ratios)]
    summary = gradient_ratio_summary(history, [1, 1])
    assert summary["grad_norm_ratio_first_last_end_median"] == pytest.approx(6.0)
    assert summary["grad_norm_ratio_first_last_median"] == pytest.approx(1.0)


def test_no_history_gives_no_ratios():
    assert gradient_ratio_summary([], []) == {}
