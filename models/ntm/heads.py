"""Read and write heads: the controller's interface vector, split and squashed per head.

One linear layer emits every head's parameters at once (one matmul per step, not one per
head). Activations follow Graves et al. 2014: ``beta = softplus``, ``g = sigmoid`` (kept as a
logit for log-space interpolation), ``s = softmax`` (kept as log-probabilities), ``gamma = 1 +
softplus``, ``e = sigmoid``; keys and the add vector ``a`` go through ``tanh`` (as Collier &
Beel 2018) so memory contents stay bounded.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class HeadParams(NamedTuple):
    """Addressing parameters of all ``H = R + W`` heads (read heads first) and write contents."""

    keys: torch.Tensor  # [B,H,M]
    beta: torch.Tensor  # [B,H]    >= 0
    gate_logit: torch.Tensor  # [B,H]
    log_shift: torch.Tensor  # [B,H,S]  log of a distribution over offsets
    gamma: torch.Tensor  # [B,H]    >= 1
    erase: torch.Tensor  # [B,W,M]  in (0, 1)
    add: torch.Tensor  # [B,W,M]  in (-1, 1)


class HeadProjection(nn.Module):
    """``controller output [B,C] -> HeadParams``, with the raw interface clipped to ``+-clip``."""

    def __init__(
        self,
        in_features: int,
        read_heads: int,
        write_heads: int,
        width: int,
        shift_range: int,
        clip: float = 20.0,
    ) -> None:
        super().__init__()
        self.read_heads, self.write_heads, self.width = read_heads, write_heads, width
        self.shifts = 2 * shift_range + 1
        self.address_sizes = [width, 1, 1, self.shifts, 1]
        self.address_size = sum(self.address_sizes)
        heads = read_heads + write_heads
        self.interface_size = heads * self.address_size + write_heads * 2 * width
        self.clip = clip
        self.projection = nn.Linear(in_features, self.interface_size)

    def forward(self, features: torch.Tensor) -> HeadParams:
        batch = features.shape[0]
        heads = self.read_heads + self.write_heads
        interface = self.projection(features).clamp(-self.clip, self.clip)
        addressing, contents = interface.split(
            [heads * self.address_size, self.write_heads * 2 * self.width], dim=-1
        )
        keys, beta, gate, shift, gamma = addressing.view(batch, heads, -1).split(
            self.address_sizes, dim=-1
        )
        erase, add = contents.view(batch, self.write_heads, 2 * self.width).chunk(2, dim=-1)
        return HeadParams(
            keys=torch.tanh(keys),
            beta=F.softplus(beta.squeeze(-1)),
            gate_logit=gate.squeeze(-1),
            log_shift=F.log_softmax(shift, dim=-1),
            gamma=1.0 + F.softplus(gamma.squeeze(-1)),
            erase=torch.sigmoid(erase),
            add=torch.tanh(add),
        )
