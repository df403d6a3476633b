"""Comparison classifiers for MNIST: a plain MLP of any depth, a small CNN, and an LSTM over
rows or pixels.

The MLP has the unfolded LSTM's depth and width but no gating (ReLU, optional batch norm), so
the gradient-norm-per-layer plot can put both side by side; the CNN's first-layer filters are
the reference for what the unfolded LSTM's first layer learns.
"""

from __future__ import annotations

import torch
from torch import nn


class DeepMLP(nn.Module):
    """``input -> depth x (Linear -> [BN] -> ReLU) -> Linear(classes)``."""

    def __init__(
        self,
        input_size: int = 784,
        hidden_size: int = 100,
        depth: int = 10,
        classes: int = 10,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers: list[nn.Module] = []
        self.linears = nn.ModuleList()
        width = input_size
        for _ in range(depth):
            linear = nn.Linear(width, hidden_size)
            nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
            self.linears.append(linear)
            layers += [linear, nn.BatchNorm1d(hidden_size)] if batch_norm else [linear]
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_size
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, classes)

    def layer_weights(self) -> list[nn.Parameter]:
        return [linear.weight for linear in self.linears]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


class SmallCNN(nn.Module):
    """Two 5x5 convolutions (32, 64 channels) with max pooling, then two dense layers."""

    def __init__(self, classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.dense = nn.Linear(64 * 7 * 7, 256)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(256, classes)

    def layer_weights(self) -> list[nn.Parameter]:
        return [self.conv1.weight, self.conv2.weight, self.dense.weight]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = self.dropout(torch.relu(self.dense(x.flatten(1))))
        return self.classifier(x)


class SequenceLSTMClassifier(nn.Module):
    """cuDNN/ATen LSTM over ``[B, T, input_size]``; a linear classifier reads the last ``h``."""

    def __init__(
        self, input_size: int, hidden_size: int = 100, num_layers: int = 1, classes: int = 10
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.classifier = nn.Linear(hidden_size, classes)

    def layer_weights(self) -> list[nn.Parameter]:
        return [getattr(self.lstm, f"weight_ih_l{i}") for i in range(self.lstm.num_layers)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        return self.classifier(output[:, -1])
