"""The NTM-vs-LSTM reference experiment: does the memory generalize where an LSTM does not?

    python -m pipelines.experiments --task copy --budget_minutes 45 --stop_at 0.01

Trains the default NTM and the default LSTM on the same task, seed and data stream, each for
the same wall-clock budget (or until its validation error reaches ``--stop_at``), scores both
on the same test sets (for copy the seeds' setting: train lengths 1..20, test lengths 5, 10,
20, 40, 80 and 120), and logs a side-by-side table (parameter count, train time, bit accuracy
per length) and the accuracy-vs-length plot. The two trainings are child runs of one parent
run, so the MLflow UI compares them in one view.

The defaults (45 minutes, stop at 0.01 bits/seq) are what the LSTM needs on two CPU cores to
fit copy's training lengths; the NTM gets there far sooner (docs/results.md, "NTM against LSTM
on copy").
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.studies.ntm_vs_lstm import NtmVsLstmConfig, ntm_vs_lstm

CONFIG = NtmVsLstmConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("ntm_vs_lstm", CONFIG, ntm_vs_lstm, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
