"""``ntm_iteration --inside_pipeline``'s bookkeeping: which times pair up, and its refusal of
too short a run (its smoke run through the docs' command is in tests/e2e)."""

import pytest

from benchmarks.ntm_iteration import InterleavedTimer, summarize


def timer_with(lightning: list[float], bare: list[float], block: int) -> InterleavedTimer:
    timer = InterleavedTimer(block)
    timer.lightning, timer.bare = lightning, bare
    return timer


def test_the_first_block_of_lightning_batches_is_left_out_and_the_ratios_compare_the_rest():
    # the first block holds the compile: 9 s a batch would swamp every later figure
    timer = timer_with([9.0, 9.0, 0.030, 0.030, 0.036], [0.020, 0.025, 0.030, 0.024], block=2)
    result = summarize(timer)
    assert result["lightning"]["n"] == 3
    assert result["lightning"]["median_ms"] == pytest.approx(30.0)
    assert result["bare"]["median_ms"] == pytest.approx(24.5)
    assert result["ratio_median"] == pytest.approx(30.0 / 24.5)
    assert result["ratio_mean"] == pytest.approx(32.0 / 24.75)


def test_a_run_without_a_timed_pair_of_blocks_is_refused_with_what_to_change():
    with pytest.raises(SystemExit, match="--iterations"):
        summarize(timer_with([1.0, 1.0], [], block=2))
