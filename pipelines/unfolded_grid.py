"""The unfolded-LSTM reference grid: dropout yes/no x tied yes/no, each over depth and state
size, one parent run with a child run per cell and a summary table.

    python -m pipelines.unfolded_grid --epochs 10                       # all 36 cells
    python -m pipelines.unfolded_grid --depths 10 --hidden_sizes 100 --dropouts 0 --tied false

Narrowing any list to one value runs a subset (one cell when all four are single values). The
parent run holds ``grid/summary.csv`` and ``grid/summary.md``: test accuracy, train time,
seconds per epoch and the first/last-layer gradient-norm ratio of every cell.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.studies.unfolded_grid import UnfoldedGridConfig, unfolded_grid

CONFIG = UnfoldedGridConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("unfolded_grid", CONFIG, unfolded_grid, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
