"""Every command in README.md, run as a user types it (shrunk only where it would take minutes).

The commands are read from the README's ``bash`` blocks, so a command added there without a way
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
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import requests
from mlflow.tracking import MlflowClient

from pipelines.config import parse_config
from pipelines.interrupts import RunInterrupted
from pipelines.train import train
from pipelines.train_config import TrainConfig
from tests.conftest import ROOT, CtrlCAt, free_port, subprocess_env

pytestmark = pytest.mark.slow

MLFLOW_RUN = "mlflow run . --env-manager local"
# sizes that make a sequence model train in seconds; the behaviour under test is unchanged
TINY_TRAIN = {"max_steps": "6", "batches_per_epoch": "3", "val_size": "20", "test_size": "10",
              "test_lengths": "5", "hidden_size": "16", "num_layers": "1",
              "max_minutes": "2"}  # fmt: skip
TINY_HPO_SPACE = "batches_per_epoch=3,val_size=20,test_size=10"
BENCH_TRAIN = ("--batches_per_epoch", "2", "--val_size", "20", "--test_size", "10",
               "--eval_batch_size", "10", "--progress_bar", "false")  # fmt: skip
TINY_MNIST = {"epochs": "1", "train_subset": "256", "max_steps": "4", "hidden_size": "8"}


def readme_commands() -> list[str]:
    """Each command line of the README's bash blocks, without its trailing comment."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            commands.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return commands


@dataclass
class Runnable:
    """How to run one README command: option overrides and what must exist first."""

    overrides: dict[str, str] = field(default_factory=dict)
    needs: str | None = None  # finished, killed, repeat_copy, checkpoint, recall, champion
    mnist: bool = False
    tail: tuple[str, ...] = ()  # appended after the overrides (train options after `--`)
    saves: str | None = None  # a benchmark that writes this result file instead of a run


@dataclass
class Elsewhere:
    """A command this file does not run, and the test (or reason) that covers it."""

    reason: str


HOW: dict[str, Runnable | Elsewhere] = {
    "make run": Elsewhere("the Makefile target is `mlflow run . --env-manager local` "
                          "(test_make_run_is_the_main_entry_point), run below as typed"),
    "make test": Elsewhere("CI's own command (.ci/run runs it)"),
    "make ui": Elsewhere("test_make_ui_and_server_serve_the_store"),
    "make server": Elsewhere("test_make_ui_and_server_serve_the_store"),
    "make dashboard": Elsewhere("test_make_dashboard_serves_the_default_study_storage"),
    "python -m pipelines.train --model lstm --max_minutes 5 --register_as lstm-copy": Runnable(
        TINY_TRAIN),
    f"{MLFLOW_RUN} -e evaluate -P models=models:/ntm-copy@champion": Runnable(
        {"test_size": "10", "lengths": "5"}, needs="champion"),
    "python -m benchmarks.readme_figures --max_minutes 3": Runnable(
        {"max_minutes": "0.05", "test_size": "10"}, tail=("--", *BENCH_TRAIN),
        saves="readme_figures"),
    "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000": Elsewhere(
        "tests/pipelines/test_tracking_server.py logs every pipeline through a real server"),
    f"{MLFLOW_RUN} -e train -P model=lstm -P max_minutes=10": Runnable(TINY_TRAIN),
    f"{MLFLOW_RUN} -e train -P memory_slots=64 -P controller=lstm -P stop_at=0.1": Runnable(
        TINY_TRAIN),
    "python -m pipelines.train --model ntm --max_steps 2000 --read_heads 2": Runnable(TINY_TRAIN),
    "python -m pipelines.train --help": Runnable(),
    "python -m pipelines.train --model ntm --accelerator cpu --devices 2 --strategy ddp "
    "--stop_at 0.1": Runnable(TINY_TRAIN),
    f"{MLFLOW_RUN} -e classify -P model=mlp -P accelerator=cpu -P devices=2 -P strategy=ddp":
        Runnable(TINY_MNIST, mnist=True),
    "python -m pipelines.hpo --model lstm --n_trials 4 --accelerator cpu --devices 2 "
    "--strategy ddp": Runnable(
        {"n_trials": "2", "trial_max_steps": "6", "study_name": "lstm-copy-ddp",
         "space": f"{TINY_HPO_SPACE},num_layers=1,hidden_size=16|32"}),

    f"{MLFLOW_RUN} -e train -P resume_run_id=<run id>": Runnable(needs="killed"),
    "python -m pipelines.train --resume_run_id <run id>": Runnable(needs="killed"),
    f"{MLFLOW_RUN} -e evaluate -P run_ids=<run id>,<another run id>": Runnable(
        {"test_size": "20", "lengths": "5,10"}, needs="finished"),
    "python -m pipelines.evaluate --run_ids <id> --lengths 10,20,40,80,120": Runnable(
        {"test_size": "20"}, needs="finished"),
    "python -m pipelines.evaluate --checkpoints .ntmlab/runs/<id>/checkpoints/best.ckpt":
        Runnable({"test_size": "20", "lengths": "5"}, needs="checkpoint"),
    "python -m pipelines.evaluate --run_ids <repeat copy run> --lengths 10,20 --repeats 10,20":
        Runnable({"test_size": "10", "eval_batch_size": "10"}, needs="repeat_copy"),
    f"{MLFLOW_RUN} -e ntm_vs_lstm": Runnable(
        {"budget_minutes": "0.05", "batches_per_epoch": "3", "val_size": "20", "test_size": "10",
         "test_lengths": "5,10", "progress_bar": "false"}),
    "python -m pipelines.experiments --budget_minutes 10": Runnable(
        {"budget_minutes": "0.05", "batches_per_epoch": "3", "val_size": "20", "test_size": "10",
         "test_lengths": "5,10", "progress_bar": "false"}),
    f"{MLFLOW_RUN} -e hpo -P model=ntm -P n_trials=20": Runnable(
        {"n_trials": "1", "trial_max_steps": "3", "space": TINY_HPO_SPACE}),
    "python -m pipelines.hpo --model lstm --n_trials 30 --pruner hyperband": Runnable(
        {"n_trials": "2", "trial_max_steps": "3",
         "space": f"{TINY_HPO_SPACE},num_layers=1,hidden_size=16"}),
    'python -m pipelines.hpo --model ntm --space "lr=1e-3:1e-2,controller=lstm|dense,'
    'batch_size=32"': Runnable(
        {"n_trials": "1", "trial_max_steps": "3", "study_name": "ntm-copy-narrowed",
         "space": f"lr=1e-3:1e-2,controller=lstm|dense,batch_size=32,{TINY_HPO_SPACE}"}),
    f"{MLFLOW_RUN} -e classify -P model=unfolded_lstm -P depth=10 -P epochs=12 "
    "-P lr_schedule=cosine": Runnable(TINY_MNIST, mnist=True),
    "python -m pipelines.classify --model bn_lstm --view rows": Runnable(TINY_MNIST, mnist=True),
    "python -m pipelines.classify --model lstm --view permuted": Runnable(
        {**TINY_MNIST, "max_steps": "1"}, mnist=True),
    "python -m pipelines.classify --model mlp --depth 30 --batch_norm false": Runnable(
        TINY_MNIST, mnist=True),
    f"{MLFLOW_RUN} -e unfolded_grid -P epochs=5 -P depths=10 -P hidden_sizes=100": Runnable(
        {"epochs": "1", "train_subset": "256", "hidden_sizes": "8", "dropouts": "0",
         "tied": "false", "depths": "2"}, mnist=True),
    "mlflow server --app-name basic-auth": Elsewhere(
        "the team setup's server (and its auth) runs in tests/pipelines/test_tracking_server.py"),
    "export MLFLOW_TRACKING_URI=http://mlflow.internal:5000": Elsewhere("a team's own host"),
    "export MLFLOW_TRACKING_USERNAME=<user> MLFLOW_TRACKING_PASSWORD=<password>": Elsewhere(
        "basic-auth credentials: tests/pipelines/test_tracking_server.py"),
    "export MLFLOW_FLASK_SERVER_SECRET_KEY=<a long random string>": Elsewhere("team setup"),
    "export MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini": Elsewhere("team setup"),
    "python -m benchmarks.ntm_copy --seeds 0 1 2 --max_minutes 7": Runnable(
        {"max_minutes": "0.02"}, tail=("--", *BENCH_TRAIN), saves="ntm_copy_0.1"),
    "python -m benchmarks.ntm_throughput --model ntm --seconds 60": Runnable(
        {"seconds": "1"}, tail=("--", "--compile", "false"), saves="throughput_ntm"),
    "python -m benchmarks.ntm_recipe_probe --controller dense --batch_size 64 --lr 3e-3 "
    "--clip_norm 1 --seed 1": Runnable({"max_sequences": "640"}),
    "python -m benchmarks.ntm_tasks --task associative_recall --threshold 0.1 --episodes 100000":
        Runnable({"episodes": "64", "max_minutes": "0.1"}, tail=("--", *BENCH_TRAIN),
                 saves="ntm_associative_recall_seeds0"),
    "python -m benchmarks.assoc_recall_errors --checkpoints <best.ckpt>": Runnable(
        {"test_size": "10", "items": "2"}, needs="recall", saves="assoc_recall_errors"),
    "python -m benchmarks.lstm_copy_budget --max_minutes 25": Runnable(
        {"max_minutes": "0.05", "every": "1", "variants": " ".join(BENCH_TRAIN)},
        saves="lstm_copy_budget"),
    f"{MLFLOW_RUN} -e reproduce -P budget_minutes=90": Runnable(
        {"budget_minutes": "0.2", "batches_per_epoch": "2", "val_size": "16", "test_size": "8",
         "mnist_train_subset": "256"}, mnist=True),
    "make test-fast": Elsewhere("a subset of `make test`"),
    "make lint": Elsewhere("ruff, run by developers before every commit"),
    "make format": Elsewhere("ruff, run by developers"),
}  # fmt: skip


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
    argv = ["--model", "lstm", "--hidden_size", "16", "--num_layers", "1", "--max_steps", "6",
            "--batches_per_epoch", "3", "--val_size", "20", "--test_lengths", "5",
            "--test_size", "10", "--progress_bar", "false", *extra]  # fmt: skip
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
    if needs == "recall":  # a checkpoint file, as the benchmark reads it
        extra = [
            "--model",
            "ntm",
            "--task",
            "associative_recall",
            "--max_steps",
            "2",
            "--batches_per_epoch",
            "2",
        ]
        run_id = _tiny_train(store, monkeypatch, extra)
        path = store.client.download_artifacts(run_id, "checkpoints/best.ckpt", str(directory))
        return command.replace("<best.ckpt>", path)
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
    done = subprocess.run(argv, cwd=cwd, env=store.env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
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
    overrides = {"storage": storage, "trial_max_steps": "3",
                 "space": f"{TINY_HPO_SPACE},num_layers=1,hidden_size=16"}  # fmt: skip
    for n_trials in ("1", "2"):
        argv = shrink(command, {**overrides, "n_trials": n_trials})
        argv[0] = shutil.which("mlflow", path=store.env["PATH"])
        done = subprocess.run(argv, cwd=ROOT, env=store.env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
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
    argv = ["make", "-s", target, f"UI_PORT={port}", f"SERVER_PORT={port}",
            f"SERVER_STORE={store}", f"SERVER_ARTIFACTS={tmp_path / 'mlartifacts'}"]  # fmt: skip
    log = tmp_path / "make.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=subprocess_env(MLFLOW_TRACKING_URI=store),
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail(f"make {target} did not serve within 90 s: {log.read_text()[-3000:]}")
        experiments = requests.get(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            params={"max_results": 10}, timeout=10,
        ).json()  # fmt: skip
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
            ["make", "-s", "dashboard", f"DASHBOARD_PORT={port}"], cwd=ROOT,
            env=subprocess_env(NTMLAB_OPTUNA_STORAGE=storage), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
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
