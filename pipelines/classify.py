"""Train one MNIST classifier and record it in MLflow, with the depth diagnostics.

    python -m pipelines.classify --model unfolded_lstm --depth 10 --hidden_size 100 --epochs 10
    python -m pipelines.classify --model bn_lstm --view rows
    python -m pipelines.classify --model mlp --depth 30 --batch_norm true

Models: ``unfolded_lstm`` (an LSTM unrolled through depth on the flat image), ``bn_lstm`` (the
Cooijmans BN-LSTM over rows, pixels or permuted pixels), ``lstm`` (the plain LSTM baseline on
those views), ``mlp`` (same depth and width as the unfolded LSTM, no gating) and ``cnn``.
Logged: params, ``param_count``, loss/accuracy curves, ``grad_norm/layer_<i>``, test accuracy,
``seconds_per_epoch``, a gradient-norm-vs-layer plot at several points of training, the first
layer's input weights as 28x28 filters, and the model weights.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.mnist.fit import ClassifyConfig, classify

CONFIG = ClassifyConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("classify", CONFIG, classify, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
