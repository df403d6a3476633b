"""The tracking subpackage imports only downward: no cycles, no entry point, and nothing below
``pipelines/`` talks to MLflow."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.conftest import ROOT

TRACKING = ROOT / "pipelines" / "tracking"
ENTRY_POINTS = {"train", "evaluate", "hpo", "experiments", "classify", "unfolded_grid",
                "dashboard", "ddp_worker"}  # fmt: skip


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_tracking_modules_form_no_import_cycle():
    graph = {
        path.stem: {
            name.rsplit(".", 1)[-1]
            for name in _imports(path)
            if name.startswith("pipelines.tracking.")
        }
        for path in TRACKING.glob("*.py")
    }
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        pytest.fail(f"import cycle in pipelines/tracking: {error.args[1]}")
    assert {"store", "outbox", "runs", "models", "registry"} <= set(order)


def test_tracking_imports_no_entry_point():
    for path in TRACKING.glob("*.py"):
        entry = {name for name in _imports(path) if name.removeprefix("pipelines.") in ENTRY_POINTS}
        assert not entry, f"{path.name} imports {entry}"


@pytest.mark.parametrize("package", ["models", "datamodules"])
def test_nothing_below_pipelines_knows_mlflow_or_optuna(package):
    for path in (ROOT / package).rglob("*.py"):
        heavy = {n for n in _imports(path) if n.split(".")[0] in ("mlflow", "optuna", "pipelines")}
        assert not heavy, f"{path.relative_to(ROOT)} imports {heavy}"
