"""The project's declarative files agree with the code they drive."""

import importlib
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import reduce
from pathlib import Path

import pytest
import yaml

from pipelines.common.config import build_parser, leaves, param_key, parse_config
from pipelines.sequence.config import TrainConfig
from pipelines.tracking.store import tracking_uri
from tests.conftest import ROOT


def _mlproject():
    return yaml.safe_load((ROOT / "MLproject").read_text())


def _schema_of(command: str) -> type:
    """The config schema of the command an entry point runs (``python -m pipelines.<name>``)."""
    module = re.match(r"python -m (pipelines\.\w+)", command).group(1)
    return importlib.import_module(module).CONFIG


ENTRY_POINT_SCHEMAS = {
    name: _schema_of(point["command"]) for name, point in _mlproject()["entry_points"].items()
}


def test_every_entry_point_is_checked():
    assert set(ENTRY_POINT_SCHEMAS) >= {
        "main",
        "train",
        "evaluate",
        "ntm_vs_lstm",
        "hpo",
        "classify",
        "unfolded_grid",
        "reproduce",
    }


def test_an_undeclared_parameter_reaches_the_command_as_an_option():
    """MLflow Projects appends an undeclared ``-P name=value`` as ``--name value``; the docs
    promise that every pipeline option works as a ``-P`` parameter because of it."""
    from mlflow.projects._project_spec import load_project

    entry = load_project(str(ROOT)).get_entry_point("train")
    command = entry.compute_command({"max_steps": "7", "read_heads": "2"}, None)
    assert command.endswith("--read_heads 2")
    config = parse_config(TrainConfig, shlex.split(command)[3:])
    assert (config.trainer.max_steps, config.model.read_heads) == (7, 2)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINT_SCHEMAS))
def test_mlproject_parameters_are_pipeline_options_with_same_defaults(entry_point):
    schema = ENTRY_POINT_SCHEMAS[entry_point]
    default_config = schema()
    defaults = {leaf.cli: reduce(getattr, leaf.path, default_config) for leaf in leaves(schema)}
    point = _mlproject()["entry_points"][entry_point]
    for name, spec in point["parameters"].items():
        assert name in defaults, f"MLproject parameter {name} is not a --{name} option"
        expected = defaults[name]
        if entry_point == "main" and name == "max_minutes":
            continue  # the default job is deliberately short
        if isinstance(expected, tuple):
            expected = ",".join(map(str, expected))
        if expected is None:
            expected = ""
        if isinstance(expected, bool):
            assert str(spec["default"]).lower() == str(expected).lower(), name
        elif isinstance(expected, int | float):
            assert float(spec["default"]) == expected, name
        else:
            assert str(spec["default"]) == str(expected), name
        assert f"--{name} {{{name}}}" in point["command"], name


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINT_SCHEMAS))
def test_no_pipeline_param_can_clash_with_what_mlflow_run_logged(entry_point):
    """`mlflow run` logs each entry-point parameter under its bare name as the user gave it;
    MLflow refuses to change a param, so the pipeline must log its values under other keys."""
    given = set(_mlproject()["entry_points"][entry_point]["parameters"])
    logged = {param_key(leaf) for leaf in leaves(ENTRY_POINT_SCHEMAS[entry_point])}
    assert not given & logged
    assert any(key.startswith("resolved.") for key in logged), "top-level options are prefixed"


def test_mlproject_entry_points_run_pipelines_and_main_is_short():
    points = _mlproject()["entry_points"]
    assert points["main"]["command"] == points["train"]["command"]
    assert points["main"]["parameters"]["max_minutes"]["default"] <= 5
    for point in points.values():
        assert point["command"].startswith("python -m pipelines.")


def test_design_table_names_for_train_exist():
    parser_options = {a.option_strings[0] for a in build_parser(TrainConfig, "")._actions}
    for name in (
        "model",
        "task",
        "max_steps",
        "max_minutes",
        "batch_size",
        "lr",
        "seed",
        "accelerator",
        "devices",
        "num_nodes",
        "strategy",
    ):
        assert f"--{name}" in parser_options


def _normalize(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_conda_env_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert {_normalize(d) for d in project["dependencies"]} == {
        _normalize(d) for d in pip_section if not d.startswith("-e")
    }
    assert "python=3.11" in conda["dependencies"]


def test_make_server_serves_the_store_make_run_writes_to(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    printed = subprocess.run(
        ["make", "-n", "server"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert f'--backend-store-uri "{tracking_uri()}"' in printed
    assert f'--artifacts-destination "{ROOT}/mlartifacts"' in printed
    assert "--host 127.0.0.1" in printed, "loopback unless behind auth"


def test_the_installed_mlflow_ui_reads_the_experiment_kind_and_workflow_type_we_use():
    """The experiment-kind tag and the link `make ui` prints rely on the installed UI bundle:
    an MLflow upgrade that changes either fails here, not silently in a browser."""
    import mlflow

    from pipelines.tracking.store import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    bundles = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    (main,) = bundles.glob("main.*.js")
    text = main.read_text(errors="replace")
    assert f'"{EXPERIMENT_KIND_TAG}"' in text
    assert f'CUSTOM_MODEL_DEVELOPMENT="{MODEL_TRAINING_KIND}"' in text
    assert 'MACHINE_LEARNING="machine_learning"' in text and 'get("workflowType")' in text
    makefile = (ROOT / "Makefile").read_text()
    assert "#/experiments?workflowType=machine_learning" in makefile


def test_the_check_that_no_test_writes_into_the_checkout_sees_a_new_directory():
    from tests.conftest import checkout_files

    probe = ROOT / "mlruns-probe"
    probe.mkdir()
    try:
        (probe / "run").write_text("written by a test")
        assert "mlruns-probe" in checkout_files()
    finally:
        shutil.rmtree(probe)
    assert "mlruns-probe" not in checkout_files()
