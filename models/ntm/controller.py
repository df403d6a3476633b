"""NTM controllers: a recurrent (LSTM) or feed-forward network that drives the heads.

All share one interface: ``initial_state(batch, like)`` and ``forward(x, state) -> (out, state)``
with ``out`` of shape ``[B, size]`` clipped to ``+-clip``.
"""

from __future__ import annotations

import torch
from torch import nn

CONTROLLERS = ("lstm", "dense", "double_dense")


class LSTMController(nn.Module):
    """One LSTM cell; its hidden state is the controller's memory between steps."""

    def __init__(self, input_size: int, size: int, clip: float) -> None:
        super().__init__()
        self.size, self.clip = size, clip
        self.cell = nn.LSTMCell(input_size, size)
        # forget-gate bias 1: remember by default early in training
        with torch.no_grad():
            self.cell.bias_ih[size : 2 * size].fill_(1.0)
            self.cell.bias_hh[size : 2 * size].zero_()

    def initial_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = like.new_zeros(batch, self.size)
        return zeros, zeros

    def forward(self, inputs: torch.Tensor, state):
        hidden, cell = self.cell(inputs, state)
        return hidden, (hidden, cell)  # |h| < 1 already lies inside any clip range


class DenseController(nn.Module):
    """Feed-forward: one (``layers=1``) or two (``layers=2``) ReLU layers, no state of its own."""

    def __init__(self, input_size: int, size: int, clip: float, layers: int = 1) -> None:
        super().__init__()
        self.size, self.clip = size, clip
        stack: list[nn.Module] = []
        for index in range(layers):
            stack += [nn.Linear(input_size if index == 0 else size, size), nn.ReLU()]
        self.net = nn.Sequential(*stack)

    def initial_state(self, batch: int, like: torch.Tensor) -> None:
        return None

    def forward(self, inputs: torch.Tensor, state):
        return self.net(inputs).clamp(-self.clip, self.clip), None


def build_controller(kind: str, input_size: int, size: int, clip: float) -> nn.Module:
    if kind == "lstm":
        return LSTMController(input_size, size, clip)
    if kind == "dense":
        return DenseController(input_size, size, clip, layers=1)
    if kind == "double_dense":
        return DenseController(input_size, size, clip, layers=2)
    raise ValueError(f"unknown controller {kind!r}; choose one of {CONTROLLERS}")
