"""The built-in search spaces: every bound must give a valid trial config of its pipeline."""

import copy

import pytest

from pipelines.common.config import update
from pipelines.search.config import HpoConfig, schema_of, space_name
from pipelines.search.objective import base_trial_config, check_space
from pipelines.search.spaces import build_space
from pipelines.sequence.config import TrainConfig


@pytest.mark.parametrize(
    ("model", "task"),
    [("ntm", "copy"), ("lstm", "copy"), ("ntm", "associative_recall"), ("lstm", "mnist")],
)
def test_each_built_in_space_is_valid_at_every_bound(model, task):
    config = HpoConfig(model=model, task=task)
    space = build_space(space_name(config), "", schema_of(config))
    check_space(base_trial_config(config, space), space)  # raises ConfigError on a bad bound


def test_the_lstm_spaces_forget_bias_reaches_the_model_config():
    config = HpoConfig(model="lstm")
    space = build_space("lstm", "", TrainConfig)
    base = base_trial_config(config, space)
    assert 1.0 in space["forget_bias"].extremes()  # the recipe is among the choices
    for value in space["forget_bias"].extremes():
        probe = copy.deepcopy(base)
        update(probe, {"forget_bias": value})
        assert probe.model.forget_bias == value and probe.model.name == "lstm"
