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

    ``constant`` fills it with 1e-6 (Collier & Beel 2018: about twice as fast to converge as
    the alternatives), ``learned`` trains one matrix shared by all sequences, ``random`` draws
    a new uniform matrix for every sequence.
    """

    def __init__(self, slots: int, width: int, mode: str = "constant") -> None:
        super().__init__()
        if mode not in MEMORY_INITS:
            raise ValueError(f"unknown memory init {mode!r}; choose one of {MEMORY_INITS}")
        self.slots, self.width, self.mode = slots, width, mode
        self.scale = 1.0 / math.sqrt(slots + width)
        if mode == "learned":
            self.initial = nn.Parameter(torch.empty(slots, width).uniform_(-self.scale, self.scale))

    def forward(self, batch_size: int, like: torch.Tensor) -> torch.Tensor:
        shape = (batch_size, self.slots, self.width)
        if self.mode == "constant":
            return like.new_full(shape, CONSTANT_INIT)
        if self.mode == "learned":
            return self.initial.unsqueeze(0).expand(shape)
        return (torch.rand(shape, device=like.device, dtype=like.dtype) * 2 - 1) * self.scale
