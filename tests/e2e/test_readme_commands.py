"""Every command in README.md and docs/*.md, run as a user types it (shrunk only where it would
take minutes). The maintained benchmarks run here too, at tiny size: their smoke tests.

The commands are read from the pages' ``bash`` blocks, so a command added there without a way
to run it here fails :func:`test_every_readme_command_is_accounted_for`. Each runnable command
gets the placeholders of the README (``<run id>``) filled with real runs, and its size options
overridden (``-P max_steps=...`` replaced or added, ``--max_steps ...`` replaced or appended).
After each one, the run ``mlflow run`` started (if any) and every run it made are checked:
exit 0, the runs FINISHED with metrics, and nothing left RUNNING.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import requests
from mlflow.tracking import MlflowClient

from pipelines.common.config import parse_config
from pipelines.common.interrupts import RunInterrupted
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from tests.conftest import ROOT, CtrlCAt, free_port, subprocess_env, wait_until_answers
from tests.e2e.doc_commands import HOW, MLFLOW_RUN, TINY_HPO_SPACE, Runnable, readme_commands

pytestmark = pytest.mark.slow


def _is_team_setup_continuation(command: str) -> bool:
    return command.startswith("--") or (command.endswith("\\") and "mlflow server" in command)


def test_every_readme_command_is_accounted_for():
    """A README command without a runner here (or a stated reason) is a gap: fail on it."""
    missing = []
    for command in readme_commands():
        if _is_team_setup_continuation(command):
            continue  # the team server's continuation lines
        key = command.removesuffix(" \\")
        if key not in HOW:
            missing.append(command)
    assert not missing, f"README commands with no test: {missing}"


def test_make_run_is_the_main_entry_point():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: venv\n\tmlflow run \. --env-manager local\n", makefile, re.M)


# ---------------------------------------------------------------- running the commands


def shrink(command: str, overrides: dict[str, str]) -> list[str]:
    """The command's argv with each override replacing its option, or added when absent."""
    argv = shlex.split(command)
    mlflow = argv[0] == "mlflow"
    for name, value in overrides.items():
        if mlflow:
            at = [i for i, token in enumerate(argv) if token.startswith(f"{name}=")]
            if at:
                argv[at[0]] = f"{name}={value}"
            else:
                argv += ["-P", f"{name}={value}"]
        elif f"--{name}" in argv:
            argv[argv.index(f"--{name}") + 1] = value
        else:
            argv += [f"--{name}", value]
    return argv


class Store:
    """One sqlite store and working directory shared by the README commands."""

    def __init__(self, directory: Path, mnist_dir: Path) -> None:
        self.directory = directory
        self.uri = f"sqlite:///{directory / 'mlflow.db'}"
        self.env = subprocess_env(
            MLFLOW_TRACKING_URI=self.uri,
            NTMLAB_HOME=str(directory / "ntmlab-home"),
            NTMLAB_MNIST_DIR=str(mnist_dir),
            NTMLAB_OPTUNA_STORAGE=f"sqlite:///{directory / 'optuna.db'}",
            NTMLAB_BENCHMARK_OUT=str(directory / "benchmarks-out"),
        )
        self.client = MlflowClient(self.uri)

    def runs(self) -> list:
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        return self.client.search_runs(experiments, max_results=5000)


@pytest.fixture(scope="module")
def store(tmp_path_factory, mnist_dir_module) -> Store:
    directory = tmp_path_factory.mktemp("readme")
    previous = os.getcwd()
    os.chdir(directory)  # the store's "Default" experiment keeps artifacts beside it
    try:
        made = Store(directory, mnist_dir_module)
        made.runs()
    finally:
        os.chdir(previous)
    return made


def _tiny_train(store: Store, monkeypatch, extra: list[str], interrupt: bool = False) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("NTMLAB_HOME", store.env["NTMLAB_HOME"])
    argv = [
        "--model",
        "lstm",
        "--hidden_size",
        "16",
        "--num_layers",
        "1",
        "--max_steps",
        "6",
        "--batches_per_epoch",
        "3",
        "--val_size",
        "20",
        "--test_lengths",
        "5",
        "--test_size",
        "10",
        "--progress_bar",
        "false",
        *extra,
    ]
    config = parse_config(TrainConfig, argv)
    if not interrupt:
        return train(config).run_id
    with pytest.raises(RunInterrupted):
        train(config, callbacks=[CtrlCAt(4)])
    return store.client.search_runs(
        [store.client.get_experiment_by_name(config.data.task).experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0].info.run_id


def _fill(command: str, needs: str | None, store: Store, monkeypatch, directory: Path) -> str:
    """The command with its placeholders filled; files it needs go into ``directory``."""
    if needs is None:
        return command
    if needs == "killed":
        return command.replace("<run id>", _tiny_train(store, monkeypatch, [], interrupt=True))
    if needs == "champion":  # a registered model for models:/ntm-copy@champion
        _tiny_train(store, monkeypatch, ["--register_as", "ntm-copy"])
        return command
    if needs == "repeat_copy":
        extra = ["--task", "repeat_copy", "--max_len", "3", "--max_repeats", "3"]
        return command.replace("<repeat copy run>", _tiny_train(store, monkeypatch, extra))
    first = _tiny_train(store, monkeypatch, [])
    if needs == "checkpoint":  # a finished run keeps its checkpoints as artifacts
        target = directory / ".ntmlab" / "runs" / first
        store.client.download_artifacts(first, "checkpoints", str(target))
        return command.replace("<id>", first)
    second = _tiny_train(store, monkeypatch, ["--seed", "1"])
    command = command.replace("<another run id>", second)
    return command.replace("<run id>", first).replace("<id>", first)


RUNNABLE = [command for command, how in HOW.items() if isinstance(how, Runnable)]
MAX_BENCHMARKS = 7


def test_every_benchmark_script_has_a_smoke_run():
    """A benchmark no test runs can break silently: each script's documented command runs
    below at tiny size, and there are few enough scripts to keep it so."""
    scripts = {path.stem for path in (ROOT / "benchmarks").glob("*.py")} - {"__init__", "common"}
    smoked = {
        command.split()[2].removeprefix("benchmarks.")
        for command in RUNNABLE
        if command.startswith("python -m benchmarks.")
    }
    assert scripts <= smoked, f"benchmarks without a smoke run: {sorted(scripts - smoked)}"
    assert len(scripts) <= MAX_BENCHMARKS, sorted(scripts)


@pytest.mark.parametrize("command", RUNNABLE, ids=[" ".join(c.split()) for c in RUNNABLE])
def test_readme_command_runs_as_typed(command, store, monkeypatch, tmp_path):
    how = HOW[command]
    before = {run.info.run_id for run in store.runs()}
    # `mlflow run .` and the benchmarks run from the project root, as the README says
    cwd = ROOT if command.startswith(("mlflow run .", "python -m benchmarks.")) else tmp_path
    typed = _fill(command, how.needs, store, monkeypatch, tmp_path)
    made_by_fill = {run.info.run_id for run in store.runs()} - before
    argv = [*shrink(typed, how.overrides), *how.tail]
    if argv[:3] == ["python", "-m", argv[2]]:
        argv[0] = sys.executable
    else:
        argv[0] = shutil.which(argv[0], path=store.env["PATH"]) or argv[0]
    env = {**store.env, **how.env}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    if argv[-1] == "--help":
        assert "--max_steps" in done.stdout
        return
    if how.saves is not None:
        assert (Path(store.env["NTMLAB_BENCHMARK_OUT"]) / f"{how.saves}.json").is_file()
    new = [run for run in store.runs() if run.info.run_id not in before | made_by_fill]
    resumed = [run for run in store.runs() if run.info.run_id in made_by_fill]
    for run in [*new, *resumed]:
        assert run.info.status == "FINISHED", (run.info.run_name, run.data.tags.get("error"))
    if typed.startswith("python -m benchmarks."):
        assert done.stdout.strip(), "a benchmark prints its figures"
        return
    assert new or resumed, "the command recorded nothing"
    worked = [run for run in [*new, *resumed] if "ntmlab.resumed_into" not in run.data.tags]
    assert any(run.data.metrics for run in worked), "no run holds a metric"


def test_hpo_command_resumes_its_study_when_run_again(store, tmp_path):
    """The README's first HPO command, typed twice: the study continues in the same parent."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    before = {run.info.run_id for run in store.runs()}
    command = f"{MLFLOW_RUN} -e hpo -P model=lstm -P n_trials=1"
    overrides = {
        "storage": storage,
        "trial_max_steps": "3",
        "space": f"{TINY_HPO_SPACE},num_layers=1,hidden_size=16",
    }
    for n_trials in ("1", "2"):
        argv = shrink(command, {**overrides, "n_trials": n_trials})
        argv[0] = shutil.which("mlflow", path=store.env["PATH"])
        done = subprocess.run(
            argv, cwd=ROOT, env=store.env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-4000:]
    study = optuna.load_study(study_name="lstm-copy", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    parent = store.client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["model"] == "lstm", "what `mlflow run` logged stays as given"
    assert parent.data.params["resolved.study_name"] == "lstm-copy"
    assert parent.data.metrics["trials_complete"] == 2
    launchers = [run for run in store.runs() if run.info.run_id not in before]
    launchers = [run for run in launchers if run.data.tags.get("ntmlab.resumed_into")]
    assert [run.data.tags["ntmlab.resumed_into"] for run in launchers] == [parent_id]
    assert all(run.info.status != "RUNNING" for run in store.runs())


@pytest.mark.parametrize("target", ["ui", "server"])
def test_make_ui_and_server_serve_the_store(target, tmp_path):
    """`make ui` and `make server` start MLflow on loopback over the given store."""
    port = free_port()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [
        "make",
        "-s",
        target,
        f"UI_PORT={port}",
        f"SERVER_PORT={port}",
        f"SERVER_STORE={store}",
        f"SERVER_ARTIFACTS={tmp_path / 'mlartifacts'}",
    ]
    log = tmp_path / "make.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=subprocess_env(MLFLOW_TRACKING_URI=store),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if not wait_until_answers(f"http://127.0.0.1:{port}/health", process, log, 90):
            pytest.fail(f"make {target} did not serve within 90 s: {log.read_text()[-3000:]}")
        experiments = requests.get(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            params={"max_results": 10},
            timeout=10,
        ).json()
        assert [e["name"] for e in experiments["experiments"]] == ["Default"]
        if target == "ui":  # the link that opens MLflow 3.17's UI on model training
            link = f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning"
            assert link in log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_make_dashboard_serves_the_default_study_storage(tmp_path):
    """`make dashboard`: Optuna's dashboard on loopback over hpo's default storage."""
    port = free_port()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="seen-by-the-dashboard", storage=storage)
    log = tmp_path / "make.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["make", "-s", "dashboard", f"DASHBOARD_PORT={port}"],
            cwd=ROOT,
            env=subprocess_env(NTMLAB_OPTUNA_STORAGE=storage),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                studies = requests.get(f"http://127.0.0.1:{port}/api/studies", timeout=1)
                if studies.ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail(f"make dashboard did not serve within 90 s: {log.read_text()[-3000:]}")
        names = [study["study_name"] for study in studies.json()["study_summaries"]]
        assert names == ["seen-by-the-dashboard"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
