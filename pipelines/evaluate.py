"""Evaluate trained models on longer (harder) test sets than they were trained on.

    python -m pipelines.evaluate --run_ids <train run id>[,<another>...]
    python -m pipelines.evaluate --models models:/ntm-copy@champion,runs:/<run id>/model
    python -m pipelines.evaluate --checkpoints .ntmlab/runs/<id>/checkpoints/best.ckpt

Each model is read back as the MLflow Model its train run logged (a run id, or a ``runs:/`` or
``models:/`` URI; runs of older versions from their ``model/`` files) or from a checkpoint,
scored on
seeded test sets at every length (and, for repeat copy, every repeat count), and the results go
into an evaluation run of their own, tagged with the evaluated runs: ``bit_acc_<label>`` and
``bits_per_seq_<label>`` metrics (prefixed ``<model>/`` when several models are compared), a
CSV/JSON table and a plot of accuracy against length with one line per model.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.studies.evaluate import EvaluateConfig, evaluate

CONFIG = EvaluateConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("evaluate", CONFIG, evaluate, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
