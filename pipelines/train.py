"""Train one model on one task and record everything in MLflow.

    python -m pipelines.train --model lstm --task copy --max_steps 2000

Parse and validate the config, open (or continue) the MLflow run, build data and model, fit,
then log the best checkpoint's scores at the test lengths, figures, checkpoints and the model.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train

CONFIG = TrainConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("train", CONFIG, train, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
