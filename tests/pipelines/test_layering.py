"""The package's layering, checked both ways: commands on top import the library and nothing
imports a command; each layer imports only layers below it; the module graph has no cycle;
nothing below ``pipelines/`` talks to MLflow or Optuna. The commands are read from MLproject,
so a new entry point is checked the day it is added."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.conftest import ROOT

PIPELINES = ROOT / "pipelines"
MAX_COMMAND_LINES = 60
# lowest first: a module may import its own layer and the layers below it, never above
LAYERS = (
    ("pipelines.common",),  # schema, cli, signals, placement, DDP workers, atomic files
    ("pipelines.tracking",),  # MLflow, told everything it needs by its callers
    ("pipelines.common.fit", "pipelines.common.cli"),  # the shells that open and end runs
    ("pipelines.sequence", "pipelines.mnist"),  # the two training pipelines' libraries
    ("pipelines.studies", "pipelines.search"),  # what runs many trainings
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    """Every pipelines module and the pipelines modules it imports (at any depth of its code)."""
    return {
        module_name(path): {name for name in imports(path) if name.startswith("pipelines.")}
        for path in PIPELINES.rglob("*.py")
    }


def entry_point_commands() -> set[str]:
    """The modules MLproject's entry points run (``python -m pipelines.<name>``)."""
    return set(re.findall(r"python -m (pipelines\.\w+)", (ROOT / "MLproject").read_text()))


def commands() -> set[str]:
    """The top-level ``pipelines/*.py``: commands, and only commands."""
    return {module_name(path) for path in PIPELINES.glob("*.py") if path.stem != "__init__"}


def layer_of(module: str) -> int | None:
    """The highest layer whose package holds ``module`` (``common.fit`` and ``common.cli`` sit
    above tracking, the rest of ``common`` below it)."""
    found = None
    for index, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            found = index
    return found


def test_every_mlproject_entry_point_is_a_top_level_command():
    entry_points = entry_point_commands()
    assert len(entry_points) >= 7  # train, evaluate, experiments, hpo, classify, grid, reproduce
    assert entry_points <= commands(), entry_points - commands()


@pytest.mark.parametrize("command", sorted(commands()))
def test_commands_are_thin(command):
    path = ROOT / (command.replace(".", "/") + ".py")
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_COMMAND_LINES, f"{path.name}: {lines} lines; move the work below it"
    assert "def main" in path.read_text(), f"{path.name} has no main()"


def test_no_module_imports_a_command():
    top = commands()
    offenders = {module: sorted(names & top) for module, names in graph().items() if names & top}
    assert not offenders, f"commands imported as libraries: {offenders}"


def test_each_layer_imports_only_layers_below():
    offenders = []
    for module, names in graph().items():
        own = layer_of(module)
        if own is None:
            continue
        offenders += [
            f"{module} -> {name}"
            for name in names
            if layer_of(name) is not None and layer_of(name) > own
        ]
    assert not offenders, "imports upward: " + ", ".join(sorted(offenders))


def test_tracking_imports_nothing_above_it():
    """Directly: only tracking and the common modules below it. Everything else it needs (a
    model to log, a config as a dict) is passed in."""
    for module, names in graph().items():
        if module.startswith("pipelines.tracking"):
            above = {n for n in names if (layer_of(n) or 0) > layer_of(module)}
            assert not above, f"{module} imports {above}"


def test_pipelines_modules_form_no_import_cycle():
    modules = graph()
    try:
        order = list(TopologicalSorter(modules).static_order())
    except CycleError as error:
        pytest.fail(f"import cycle: {error.args[1]}")
    assert {"pipelines.tracking.store", "pipelines.common.fit", "pipelines.sequence.fit"} <= set(
        order
    )


def test_layering_check_sees_an_upward_import():
    """The check itself can fail: tracking importing the sequence library is caught."""
    assert layer_of("pipelines.sequence.fit") > layer_of("pipelines.tracking.models")
    assert layer_of("pipelines.common.fit") > layer_of("pipelines.tracking.runs")
    assert layer_of("pipelines.common.config") < layer_of("pipelines.tracking.runs")


@pytest.mark.parametrize("package", ["models", "datamodules"])
def test_nothing_below_pipelines_knows_mlflow_or_optuna(package):
    for path in (ROOT / package).rglob("*.py"):
        heavy = {n for n in imports(path) if n.split(".")[0] in ("mlflow", "optuna", "pipelines")}
        assert not heavy, f"{path.relative_to(ROOT)} imports {heavy}"
