"""A length (item-count) curriculum: the training range's upper end grows as a start trains.

Why: an associative-recall episode of 2 items always queries the first item, so a model can
answer it with a positional rule ("output the second item") without any lookup. On the task's
full range (2..6 items) that rule is the first thing half of the NTM's seeds learn, and they sit
on its plateau. Training first on 2..3 items, then 2..4, and so on, makes more seeds reach the
target and sooner (docs/results.md, "NTM recipes, over seeds"); a start can still land on the
plateau, which the restart rule is left to catch.

The curriculum counts steps from the start of the current *start* (a restart from fresh weights
begins it again), and only the training stream follows it: validation and test sets always
cover the task's whole range, so the logged metrics mean the same with or without it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LengthCurriculum:
    """Train on ``[min_len, min_len + 1]`` first, and widen the range by one length every
    ``steps_per_length`` steps until it is the task's ``[min_len, max_len]``.

    Starting with two lengths rather than one keeps a choice in every batch stream: on
    associative recall a single item count of 2 would teach nothing but the positional rule.
    """

    steps_per_length: int

    def __post_init__(self) -> None:
        if self.steps_per_length < 1:
            raise ValueError(f"steps_per_length must be >= 1, got {self.steps_per_length}")

    def upper(self, min_len: int, max_len: int, steps_into_start: int) -> int:
        """The longest training length (most items) at ``steps_into_start`` steps of a start."""
        if steps_into_start < 0:
            raise ValueError(f"steps_into_start must be >= 0, got {steps_into_start}")
        return min(max_len, min_len + 1 + steps_into_start // self.steps_per_length)

    def steps_to_full_range(self, min_len: int, max_len: int) -> int:
        """Steps of a start before it trains on the task's whole range."""
        return max(0, max_len - min_len - 1) * self.steps_per_length
