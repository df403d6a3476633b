"""The commands of README.md and docs/*.md, and how the suite runs each one: the sizes that
shrink it to seconds, what must exist first, or the test that covers it elsewhere."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.conftest import ROOT

MLFLOW_RUN = "mlflow run . --env-manager local"
# sizes that make a sequence model train in seconds; the behaviour under test is unchanged
TINY_TRAIN = {
    "max_steps": "6",
    "batches_per_epoch": "3",
    "val_size": "20",
    "test_size": "10",
    "test_lengths": "5",
    "hidden_size": "16",
    "num_layers": "1",
    "max_minutes": "2",
}
TINY_HPO_SPACE = "batches_per_epoch=3,val_size=20,test_size=10"
BENCH_TRAIN = (
    "--batches_per_epoch",
    "2",
    "--val_size",
    "20",
    "--test_size",
    "10",
    "--eval_batch_size",
    "10",
    "--progress_bar",
    "false",
)
# the smoke runs of the compile benchmarks check their plumbing; the compiled step's numbers
# are tests/models/ntm/test_fused_step.py's, and a compile would cost a minute per run here
NO_COMPILE = {"TORCHDYNAMO_DISABLE": "1"}
TINY_MNIST = {"epochs": "1", "train_subset": "256", "max_steps": "4", "hidden_size": "8"}


DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    """Each command line of the docs' bash blocks, without its trailing comment, in order."""
    text = "\n".join(page.read_text() for page in DOC_PAGES)
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
    needs: str | None = None  # finished, killed, repeat_copy, checkpoint, champion
    mnist: bool = False
    tail: tuple[str, ...] = ()  # appended after the overrides (train options after `--`)
    saves: str | None = None  # a benchmark that writes this result file instead of a run
    env: dict[str, str] = field(default_factory=dict)  # set for the command only


@dataclass
class Elsewhere:
    """A command this file does not run, and the test (or reason) that covers it."""

    reason: str


HOW: dict[str, Runnable | Elsewhere] = {
    "make run": Elsewhere(
        "the Makefile target is `mlflow run . --env-manager local` "
        "(test_make_run_is_the_main_entry_point), run below as typed"
    ),
    "make test": Elsewhere("CI's own command (.ci/run runs it)"),
    "make ui": Elsewhere("test_make_ui_and_server_serve_the_store"),
    "make server": Elsewhere("test_make_ui_and_server_serve_the_store"),
    "make dashboard": Elsewhere("test_make_dashboard_serves_the_default_study_storage"),
    "python -m pipelines.train --model lstm --max_minutes 5 --register_as lstm-copy": Runnable(
        TINY_TRAIN
    ),
    f"{MLFLOW_RUN} -e evaluate -P models=models:/ntm-copy@champion": Runnable(
        {"test_size": "10", "lengths": "5"}, needs="champion"
    ),
    "python -m benchmarks.readme_figures --max_minutes 3": Runnable(
        {"max_minutes": "0.05", "test_size": "10"},
        tail=("--", *BENCH_TRAIN),
        saves="readme_figures",
    ),
    "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000": Elsewhere(
        "tests/pipelines/test_tracking_server.py logs every pipeline through a real server"
    ),
    f"{MLFLOW_RUN} -e train -P model=lstm -P max_minutes=10": Runnable(TINY_TRAIN),
    f"{MLFLOW_RUN} -e train -P memory_slots=64 -P controller=lstm -P stop_at=0.1": Runnable(
        TINY_TRAIN
    ),
    "python -m pipelines.train --model ntm --max_steps 2000 --read_heads 2": Runnable(TINY_TRAIN),
    "python -m pipelines.train --help": Runnable(),
    "python -m pipelines.train --model ntm --accelerator cpu --devices 2 --strategy ddp "
    "--stop_at 0.1": Runnable(TINY_TRAIN),
    f"{MLFLOW_RUN} -e classify -P model=mlp -P accelerator=cpu -P devices=2 "
    "-P strategy=ddp": Runnable(TINY_MNIST, mnist=True),
    "python -m pipelines.hpo --model lstm --n_trials 4 --accelerator cpu --devices 2 "
    "--strategy ddp": Runnable(
        {
            "n_trials": "2",
            "trial_max_steps": "6",
            "study_name": "lstm-copy-ddp",
            "space": f"{TINY_HPO_SPACE},num_layers=1,hidden_size=16|32",
        }
    ),
    f"{MLFLOW_RUN} -e train -P resume_run_id=<run id>": Runnable(needs="killed"),
    "python -m pipelines.train --resume_run_id <run id>": Runnable(needs="killed"),
    f"{MLFLOW_RUN} -e seeds -P seeds=0-19 -P workers=2 -P train_past=true "
    "-P max_minutes=3": Runnable({**TINY_TRAIN, "seeds": "0"}),
    "python -m pipelines.seeds --task associative_recall --seeds 20-39 --workers 2 "
    "--episodes 100000": Runnable({**TINY_TRAIN, "seeds": "20", "episodes": "192"}),
    f"{MLFLOW_RUN} -e evaluate -P run_ids=<run id>,<another run id>": Runnable(
        {"test_size": "20", "lengths": "5,10"}, needs="finished"
    ),
    "python -m pipelines.evaluate --run_ids <id> --lengths 10,20,40,80,120": Runnable(
        {"test_size": "20"}, needs="finished"
    ),
    "python -m pipelines.evaluate --checkpoints .ntmlab/runs/<id>/checkpoints/best.ckpt": Runnable(
        {"test_size": "20", "lengths": "5"}, needs="checkpoint"
    ),
    "python -m pipelines.evaluate --run_ids <repeat copy run> --lengths 10,20 "
    "--repeats 10,20": Runnable({"test_size": "10", "eval_batch_size": "10"}, needs="repeat_copy"),
    f"{MLFLOW_RUN} -e ntm_vs_lstm": Runnable(
        {
            "budget_minutes": "0.05",
            "batches_per_epoch": "3",
            "val_size": "20",
            "test_size": "10",
            "test_lengths": "5,10",
            "progress_bar": "false",
        }
    ),
    "python -m pipelines.experiments --budget_minutes 10": Runnable(
        {
            "budget_minutes": "0.05",
            "batches_per_epoch": "3",
            "val_size": "20",
            "test_size": "10",
            "test_lengths": "5,10",
            "progress_bar": "false",
        }
    ),
    f"{MLFLOW_RUN} -e hpo -P model=ntm -P n_trials=20": Runnable(
        {"n_trials": "1", "trial_max_steps": "3", "space": TINY_HPO_SPACE}
    ),
    "python -m pipelines.hpo --model lstm --n_trials 30 --pruner hyperband": Runnable(
        {
            "n_trials": "2",
            "trial_max_steps": "3",
            "space": f"{TINY_HPO_SPACE},num_layers=1,hidden_size=16",
        }
    ),
    'python -m pipelines.hpo --model ntm --space "lr=1e-3:1e-2,controller=lstm|dense,'
    'batch_size=32"': Runnable(
        {
            "n_trials": "1",
            "trial_max_steps": "3",
            "study_name": "ntm-copy-narrowed",
            "space": f"lr=1e-3:1e-2,controller=lstm|dense,batch_size=32,{TINY_HPO_SPACE}",
        }
    ),
    f"{MLFLOW_RUN} -e classify -P model=unfolded_lstm -P depth=10 -P epochs=12 "
    "-P lr_schedule=cosine": Runnable(TINY_MNIST, mnist=True),
    "python -m pipelines.classify --model bn_lstm --view rows": Runnable(TINY_MNIST, mnist=True),
    "python -m pipelines.classify --model lstm --view permuted": Runnable(
        {**TINY_MNIST, "max_steps": "1"}, mnist=True
    ),
    "python -m pipelines.classify --model mlp --depth 30 --batch_norm false": Runnable(
        TINY_MNIST, mnist=True
    ),
    f"{MLFLOW_RUN} -e unfolded_grid -P epochs=5 -P depths=10 -P hidden_sizes=100": Runnable(
        {
            "epochs": "1",
            "train_subset": "256",
            "hidden_sizes": "8",
            "dropouts": "0",
            "tied": "false",
            "depths": "2",
        },
        mnist=True,
    ),
    "mlflow models serve -m models:/ntm-copy@champion --env-manager local --host 127.0.0.1 "
    "--port 5001": Elsewhere("tests/pipelines/tracking/test_serving.py serves a logged model"),
    "curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d "
    "'{\"inputs\": [[[1,0,1,1,0,0,1,0,0],[0,0,0,0,0,0,0,0,1],[0,0,0,0,0,0,0,0,0]]]}'": Elsewhere(
        "tests/pipelines/tracking/test_serving.py posts copy batches to /invocations"
    ),
    "mlflow server --app-name basic-auth": Elsewhere(
        "the team setup's server (and its auth) runs in tests/pipelines/test_tracking_server.py"
    ),
    "export MLFLOW_TRACKING_URI=http://mlflow.internal:5000": Elsewhere("a team's own host"),
    "export MLFLOW_TRACKING_USERNAME=<user> MLFLOW_TRACKING_PASSWORD=<password>": Elsewhere(
        "basic-auth credentials: tests/pipelines/test_tracking_server.py"
    ),
    "export MLFLOW_FLASK_SERVER_SECRET_KEY=<a long random string>": Elsewhere("team setup"),
    "export MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini": Elsewhere("team setup"),
    # the seeds' convergence runs are skipped (an empty --seeds): the compile is what is slow
    "python -m benchmarks.ntm_compile --minutes 1.5 --seeds 0 1 2": Runnable(
        {"minutes": "0.02", "bare_iterations": "2"},
        tail=("--seeds", "--", *BENCH_TRAIN),
        saves="ntm_compile",
        env=NO_COMPILE,
    ),
    "python -m benchmarks.ntm_iteration --variants eager compiled --iterations 150": Runnable(
        {"iterations": "2", "warmup": "1"}, saves="ntm_iteration", env=NO_COMPILE
    ),
    "python -m benchmarks.ntm_iteration --variants eager compiled --iterations 1000 "
    "--inside_pipeline": Runnable(
        {"iterations": "4", "block": "2"},
        tail=("--", *BENCH_TRAIN),
        saves="ntm_iteration_inside_pipeline",
        env=NO_COMPILE,
    ),
    "python -m benchmarks.roofline --seconds 2 --iterations 100": Runnable(
        {
            "seconds": "0.01",
            "iterations": "2",
            "warmup": "1",
            "cost_batches": "1",
            "dram_bytes": "3000000",
        },
        saves="roofline",
        env=NO_COMPILE,
    ),
    "python -m benchmarks.ddp_throughput --throughput_minutes 1 --max_minutes 3 "
    "--threshold 0.1": Runnable(
        {"throughput_minutes": "0.02", "max_minutes": "0.05"},
        tail=BENCH_TRAIN,
        saves="ddp_throughput",
    ),
    "python -m benchmarks.hpo_pruning --model lstm --n_trials 20 --trial_max_steps 300": Runnable(
        {
            "n_trials": "2",
            "trial_max_steps": "4",
            "space": f"num_layers=1,hidden_size=16,max_len=3,{TINY_HPO_SPACE}",
        },
        saves="hpo_pruning_lstm",
    ),
    "python -m benchmarks.mnist_models --epochs 3 --runs unfolded_lstm:flat:10 lstm:rows": Runnable(
        {"epochs": "1"},
        mnist=True,
        tail=("--", "--train_subset", "256", "--max_steps", "4", "--hidden_size", "8"),
        saves="mnist_models",
    ),
    f"{MLFLOW_RUN} -e reproduce -P budget_minutes=90": Runnable(
        {
            "budget_minutes": "0.2",
            "batches_per_epoch": "2",
            "val_size": "16",
            "test_size": "8",
            "mnist_train_subset": "256",
        },
        mnist=True,
    ),
    "make test-fast": Elsewhere("a subset of `make test`"),
    "make lint": Elsewhere("ruff, run by developers before every commit"),
    "make format": Elsewhere("ruff, run by developers"),
}
