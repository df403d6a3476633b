"""Stacked LSTM baseline for sequence tasks (the reference copy-task LSTM is 3 x 256)."""

from __future__ import annotations

import torch
from torch import nn


class LSTMSequenceModel(nn.Module):
    """``inputs [B,T,I] -> logits [B,T,O]``; ``sigmoid(logits)`` are the bit probabilities."""

    def __init__(
        self, input_size: int, output_size: int, hidden_size: int = 256, num_layers: int = 3
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(inputs)
        return self.readout(hidden)
