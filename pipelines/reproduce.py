"""Reproduce the claims of the documents this project started from, side by side, one command.

    python -m pipelines.reproduce --budget_minutes 90
    python -m pipelines.reproduce --claims lstm_copy,ntm_vs_lstm --budget_minutes 45

One parent run, with a child run per claim (each claim's trainings nested under it). The parent
holds ``reproduction.md`` (artifact and run description): each claim, its source, the
published figure, ours, and the verdict (reproduced, better or not reproduced).

The budget is one wall-clock for everything. Each training gets a share by weight, and the time
a training leaves unused (an NTM that stops early) goes to the trainings after it. The copy
trainings serve three claims, so they run once, in the first claim that needs them. What the
machine cannot afford (pixel MNIST on two CPU cores) is not run, and the claim's figures say so.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.studies.reproduce import ReproduceConfig, reproduce

CONFIG = ReproduceConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("reproduce", CONFIG, reproduce, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
