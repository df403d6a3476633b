import pytest

from pipelines.common.config import ConfigError, flatten_params, from_dict, parse_config, to_dict
from pipelines.sequence.build import make_core
from pipelines.sequence.config import TrainConfig


def test_defaults_parse_and_flatten_with_dotted_names():
    config = parse_config(TrainConfig, [])
    params = flatten_params(config)
    assert params["model.name"] == "ntm"
    assert params["data.task"] == "copy"
    assert params["data.test_lengths"] == "20,40,80,120"
    assert params["optim.lr"] == pytest.approx(3e-3), "the NTM recipe fills an empty lr"
    assert parse_config(TrainConfig, ["--model", "lstm"]).optim.lr == pytest.approx(3e-3)
    assert parse_config(TrainConfig, ["--lr", "0.05"]).optim.lr == pytest.approx(0.05)
    assert params["optim.lr_decay_patience"] == 1, "and the NTM's plateau decay"
    assert parse_config(TrainConfig, ["--model", "lstm"]).optim.lr_decay_patience == 3
    assert parse_config(TrainConfig, ["--lr_decay_patience", "0"]).optim.lr_decay_patience == 0
    assert params["optim.lr_decay_floor"] == 0.0, "the NTM decays without a floor"
    assert parse_config(TrainConfig, ["--model", "lstm"]).optim.lr_decay_floor == 0.25
    assert parse_config(TrainConfig, ["--lr_decay_floor", "0.5"]).optim.lr_decay_floor == 0.5


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        # controller, location-first heads, controller units, heads, batch, decay patience, beta,
        # starting memory, curriculum steps per length
        ("copy", ("dense", True, 100, 1, 1, 64, 1, 0.0, "constant", 0)),
        ("repeat_copy", ("lstm", True, 100, 1, 1, 16, 0, 0.0, "constant", 0)),
        ("associative_recall", ("dense", False, 256, 4, 4, 32, 0, 5.0, "random", 150)),
    ],
)
def test_the_task_chooses_the_ntm_recipe_unless_given(task, expected):
    def recipe(argv):
        config = parse_config(TrainConfig, ["--task", task, *argv])
        model = config.model
        return (
            model.controller,
            model.location_first_init,
            model.controller_size,
            model.read_heads,
            model.write_heads,
            config.data.batch_size,
            config.optim.lr_decay_patience,
            model.beta_init,
            model.memory_init,
            config.data.curriculum_steps_per_length,
        )

    assert recipe([]) == expected
    given = ["--controller", "double_dense", "--location_first_init", "true"]
    given += ["--controller_size", "7", "--read_heads", "2", "--write_heads", "3"]
    given += ["--batch_size", "5", "--lr_decay_patience", "4", "--beta_init", "2"]
    given += ["--memory_init", "learned", "--curriculum_steps_per_length", "9"]
    assert recipe(given) == ("double_dense", True, 7, 2, 3, 5, 4, 2.0, "learned", 9)
    empty = ["--controller", "", "--read_heads", "", "--batch_size", ""]
    assert recipe(empty) == expected, "an empty MLproject value means the recipe"
    lstm = parse_config(TrainConfig, ["--task", task, "--model", "lstm"])
    data, optim = lstm.data, lstm.optim
    assert (data.batch_size, optim.lr_decay_patience, data.curriculum_steps_per_length) == (
        64,
        3,
        0,
    ), "NTM-only recipe"
    assert "model.read_heads" not in flatten_params(lstm), "an LSTM run logs no NTM fields"


def test_cli_values_land_in_their_sections():
    config = parse_config(
        TrainConfig,
        ["--hidden_size", "32", "--lr", "0.01", "--test_lengths", "5, 10", "--seed", "3"],
    )
    assert config.model.hidden_size == 32
    assert config.optim.lr == pytest.approx(0.01)
    assert config.data.test_lengths == (5, 10)
    assert config.seed == 3


def test_empty_string_means_unset_for_optional_values():
    assert parse_config(TrainConfig, ["--experiment_name", ""]).experiment_name is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "foo"], r"--model: 'foo' is not allowed; choose one of: ntm, lstm"),
        (["--task", "sort"], r"--task: 'sort' is not allowed; choose one of: copy"),
        (["--hidden_size", "-3"], r"--hidden_size: must be >= 1, got -3"),
        (["--lr", "0"], r"--lr: must be > 0.0, got 0.0"),
        (["--max_steps", "abc"], r"argument --max_steps: expected an integer, got 'abc'"),
        (["--lr", "fast"], r"argument --lr: expected a number, got 'fast'"),
        (["--lr", "nan"], r"argument --lr: expected a finite number"),
        (["--test_lengths", "10,x"], r"expected comma-separated integers"),
        (["--test_lengths", "10,-1"], r"--test_lengths: must be >= 1, got -1"),
        (["--min_len", "5", "--max_len", "3"], r"--min_len \(5\) must not exceed --max_len \(3\)"),
        (["--no_such_option", "1"], r"unrecognized arguments: --no_such_option"),
    ],
)
def test_bad_values_raise_one_clear_message(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(TrainConfig, argv)


def test_round_trip_through_dict():
    config = parse_config(TrainConfig, ["--hidden_size", "12", "--test_lengths", "3,4"])
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown config key .model\.wings."):
        from_dict(TrainConfig, {"model": {"wings": 2}})


def test_beta_init_reaches_the_ntm_core_and_is_validated():
    config = parse_config(TrainConfig, ["--task", "associative_recall", "--beta_init", "6"])
    assert make_core(config.model, 8, 6).config.beta_init == 6.0
    assert parse_config(TrainConfig, []).model.beta_init == 0.0, "copy: Linear's bias"
    recall = parse_config(TrainConfig, ["--task", "associative_recall"])
    assert recall.model.beta_init == 5.0, "associative recall's recipe"
    linear = ["--task", "associative_recall", "--beta_init", "0"]
    assert make_core(parse_config(TrainConfig, linear).model, 8, 6).config.beta_init == 0.0
    with pytest.raises(ConfigError, match="beta_init"):
        parse_config(TrainConfig, ["--beta_init", "-1"])
