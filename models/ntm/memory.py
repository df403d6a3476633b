"""NTM memory: an ``N x M`` matrix per batch item, read by weighted sum, written by erase + add."""

from __future__ import annotations

import math

import torch
from torch import nn

MEMORY_INITS = ("constant", "learned", "random")
CONSTANT_INIT = 1e-6


def read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. (2): ``r_h = sum_n w_h(n) M_n``; weights ``[B,H,N]`` x memory ``[B,N,M]``."""
    return torch.bmm(weights, memory)


def write(
    memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor
) -> torch.Tensor:
    """Eqs. (3)-(4) for any number of write heads, combined as in the paper.

    Erasures multiply (order-free): ``M~ = M * prod_h (1 - w_h e_h^T)``; additions sum:
    ``M' = M~ + sum_h w_h a_h^T``. ``weights`` ``[B,W,N]``, ``erase``/``add`` ``[B,W,M]``.
    """
    if weights.shape[1] == 1:  # one head: M + w (a - e * M), three passes over memory
        column = weights.transpose(1, 2)  # [B,N,1]
        return torch.addcmul(memory, column, add - erase * memory)
    keep = 1.0 - weights.unsqueeze(-1) * erase.unsqueeze(-2)  # [B,W,N,M]
    return memory * keep.prod(dim=1) + torch.bmm(weights.transpose(1, 2), add)


class MemoryInit(nn.Module):
    """The memory each sequence starts from, fresh for every sequence and batch item.

    * ``constant``: every cell starts at 1e-6 (Collier & Beel 2018: about twice as fast to
      converge as the alternatives). As in their reference code, this starting matrix is a
      trained parameter: a frozen constant keeps all slots identical forever, so content
      addressing could never tell them apart and the heads stay blurred over the whole memory.
    * ``learned``: a trained starting matrix initialised with glorot-scale uniform noise.
    * ``random``: a new uniform random matrix for every sequence (not trained).
    """

    def __init__(self, slots: int, width: int, mode: str = "constant") -> None:
        super().__init__()
        if mode not in MEMORY_INITS:
            raise ValueError(f"unknown memory init {mode!r}; choose one of {MEMORY_INITS}")
        self.slots, self.width, self.mode = slots, width, mode
        self.scale = 1.0 / math.sqrt(slots + width)
        if mode == "constant":
            self.initial = nn.Parameter(torch.full((slots, width), CONSTANT_INIT))
        elif mode == "learned":
            self.initial = nn.Parameter(torch.empty(slots, width).uniform_(-self.scale, self.scale))

    def forward(self, batch_size: int, like: torch.Tensor) -> torch.Tensor:
        shape = (batch_size, self.slots, self.width)
        if self.mode == "random":
            return (torch.rand(shape, device=like.device, dtype=like.dtype) * 2 - 1) * self.scale
        return self.initial.unsqueeze(0).expand(shape)
