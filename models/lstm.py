"""Stacked LSTM baseline for sequence tasks (the reference copy-task LSTM is 3 x 256)."""

from __future__ import annotations

import torch
from torch import nn


class LSTMSequenceModel(nn.Module):
    """``inputs [B,T,I] -> logits [B,T,O]``; ``sigmoid(logits)`` are the bit probabilities.

    ``forget_bias`` is the starting bias of every layer's forget gate (Gers et al. 2000;
    Jozefowicz et al. 2015). PyTorch starts it near 0, so a fresh cell forgets about half its
    state per step; copy needs the state held for 2L + 1 steps, so a bias of 1 (keep 73 %) lets
    the gradient reach the early inputs from the start. ``None`` keeps PyTorch's own start.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int = 256,
        num_layers: int = 3,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)
        if forget_bias is not None:
            self.set_forget_bias(forget_bias)

    @torch.no_grad()
    def set_forget_bias(self, value: float) -> None:
        """Forget-gate bias ``value`` in every layer (PyTorch's gate order is i, f, g, o; the
        input and hidden biases add, so the whole value goes into one and the other is 0)."""
        hidden = self.lstm.hidden_size
        for layer in range(self.lstm.num_layers):
            getattr(self.lstm, f"bias_ih_l{layer}")[hidden : 2 * hidden] = value
            getattr(self.lstm, f"bias_hh_l{layer}")[hidden : 2 * hidden] = 0.0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(inputs)
        return self.readout(hidden)
