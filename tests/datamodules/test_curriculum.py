import pytest

from datamodules.curriculum import LengthCurriculum


def test_the_range_starts_with_two_lengths_and_widens_by_one_every_steps_per_length():
    curriculum = LengthCurriculum(300)
    uppers = [curriculum.upper(2, 6, step) for step in (0, 299, 300, 599, 600, 899, 900, 10**6)]
    assert uppers == [3, 3, 4, 4, 5, 5, 6, 6]
    assert curriculum.steps_to_full_range(2, 6) == 900
    assert curriculum.upper(2, 6, 900) == 6 and curriculum.upper(2, 6, 899) == 5


def test_a_range_of_one_or_two_lengths_is_full_from_the_first_step():
    curriculum = LengthCurriculum(10)
    assert curriculum.upper(4, 4, 0) == 4 and curriculum.steps_to_full_range(4, 4) == 0
    assert curriculum.upper(4, 5, 0) == 5 and curriculum.steps_to_full_range(4, 5) == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="steps_per_length must be >= 1"):
        LengthCurriculum(0)
    with pytest.raises(ValueError, match="steps_into_start must be >= 0"):
        LengthCurriculum(5).upper(1, 5, -1)
