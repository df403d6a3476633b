"""Name -> object for the classify pipeline: the classifier core and the MNIST data module."""

from __future__ import annotations

from torch import nn

from datamodules.mnist import MNISTDataModule, MNISTUnavailable
from models.classifiers import DeepMLP, SequenceLSTMClassifier, SmallCNN
from models.unfolded_lstm import RecurrentBNLSTM, UnfoldedLSTM
from pipelines.common.config import ConfigError
from pipelines.mnist.config import ClassifyConfig


def make_classifier(config: ClassifyConfig, input_shape: tuple[int, ...]) -> nn.Module:
    if config.model == "unfolded_lstm":
        return UnfoldedLSTM(
            784,
            config.hidden_size,
            config.depth,
            tied=config.tied,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
            gamma_h=config.bn_gamma_h,
            input_init_gain=config.input_init_gain,
        )
    if config.model == "mlp":
        return DeepMLP(
            784,
            config.hidden_size,
            config.depth,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
        )
    if config.model == "cnn":
        return SmallCNN(dropout=config.dropout)
    steps, width = input_shape
    if config.model == "bn_lstm":
        return RecurrentBNLSTM(width, config.hidden_size, steps=steps, batch_norm=config.batch_norm)
    return SequenceLSTMClassifier(width, config.hidden_size)


def make_datamodule(config: ClassifyConfig) -> MNISTDataModule:
    """The split, view and permutation of ``config``, set up (missing files are a ConfigError)."""
    data = MNISTDataModule(
        config.view,
        data_dir=config.data_dir,
        batch_size=config.batch_size,
        seed=config.seed,
        permutation_seed=config.seed,
        train_subset=config.train_subset,
    )
    try:
        data.setup()
    except MNISTUnavailable as error:
        raise ConfigError(str(error)) from None
    return data
