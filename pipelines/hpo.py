"""Hyperparameter search with Optuna: resumable studies, pruning, nested MLflow runs, workers.

    python -m pipelines.hpo --model ntm --task copy --n_trials 20 --study_name ntm-copy
    python -m pipelines.hpo ... --space "lr=1e-4:3e-3,controller=lstm|dense,max_len=10"

Running the same command again continues the study up to ``--n_trials`` finished trials
(COMPLETE or PRUNED). Several processes or machines may run it against one storage at once:
``journal:///path/file.log`` on one machine, ``postgresql+psycopg://...`` across machines
(SQLite is for one worker). With an RDB or a journal storage a trial whose process died is
failed by heartbeat and its parameters are retried (pipelines/trial_heartbeat.py).

The study is one parent MLflow run (its id is kept in the study, so a resume reopens it); each
trial is a nested train run tagged with its trial number and final state.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.search.study import HpoConfig, hpo

CONFIG = HpoConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("hpo", CONFIG, hpo, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
