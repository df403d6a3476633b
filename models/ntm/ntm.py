"""The Neural Turing Machine (Graves et al. 2014), batched over sequences.

Each step: the controller sees the input and the previous step's reads; it emits the heads'
parameters; every head is addressed (content, interpolation, shift, sharpening) against the
memory as it was before this step; read heads read, then write heads erase and add. The output
is a linear readout of the controller output and the new reads (logits; ``sigmoid`` for bits).

A plain ``torch.nn.Module``: no Lightning, any device, and no loop over batch items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from models.fused_step import FusedStep
from models.ntm.addressing import address
from models.ntm.controller import build_controller
from models.ntm.heads import HeadProjection
from models.ntm.memory import MemoryInit, read, write


@dataclass(frozen=True)
class NTMConfig:
    """Sizes and options; defaults are the copy-task NTM of Collier & Beel 2018."""

    input_size: int
    output_size: int
    memory_slots: int = 128
    memory_width: int = 20
    read_heads: int = 1
    write_heads: int = 1
    controller: str = "lstm"
    controller_size: int = 100
    shift_range: int = 1
    memory_init: str = "constant"
    controller_clip: float = 20.0
    location_first_init: bool = True
    beta_init: float = 0.0  # starting key strength; 0: Linear's bias (beta ~ 0.7)

    def __post_init__(self) -> None:
        for name in (
            "input_size",
            "output_size",
            "memory_slots",
            "memory_width",
            "read_heads",
            "write_heads",
            "controller_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.shift_range < 0 or 2 * self.shift_range + 1 > self.memory_slots:
            raise ValueError(
                f"shift_range must be in 0..{(self.memory_slots - 1) // 2}, got {self.shift_range}"
            )
        if self.beta_init < 0:
            raise ValueError(f"beta_init must be >= 0 (0: Linear's bias), got {self.beta_init}")
        if self.controller_clip <= 0:
            raise ValueError(f"controller_clip must be > 0, got {self.controller_clip}")


class NTMState(NamedTuple):
    memory: torch.Tensor  # [B,N,M]
    log_weights: torch.Tensor  # [B,H,N], read heads first
    reads: torch.Tensor  # [B,R,M]
    controller: object  # the controller's own state (None for feed-forward)


class NTMTrace(NamedTuple):
    """What the memory did, for figures: weightings over time and the final memory."""

    read_weights: torch.Tensor  # [B,T,R,N]
    write_weights: torch.Tensor  # [B,T,W,N]
    memory: torch.Tensor  # [B,N,M] after the last step


def _contiguous(state: NTMState) -> NTMState:
    """The starting state shaped like every later one (contiguous; an LSTM controller's zero
    state marked as requiring grad like the states it computes), for one compiled graph."""
    controller = state.controller
    if isinstance(controller, tuple):
        controller = tuple(  # fresh tensors: the zero state's h and c are one tensor
            part if part.requires_grad else part.requires_grad_()
            for part in map(_standard_strides, controller)
        )
    return NTMState(
        _standard_strides(state.memory),
        _standard_strides(state.log_weights),
        _standard_strides(state.reads),
        controller,
    )


def _standard_strides(tensor: torch.Tensor) -> torch.Tensor:
    """A row-major copy whose strides depend on its shape alone. ``contiguous()`` keeps a
    tensor that is already contiguous as it is, and a size-1 dimension (a batch of one) counts
    as contiguous whatever its stride, so it kept a stride the compiled step's guards see:
    ``[1, T, I]`` inputs gave every sequence length a graph of its own, and past Dynamo's
    recompile limit the step ran eager without a word."""
    return tensor.clone(memory_format=torch.contiguous_format)


class NTM(FusedStep, nn.Module):
    def __init__(self, config: NTMConfig) -> None:
        super().__init__()
        self.config = config
        reads = config.read_heads * config.memory_width
        heads = config.read_heads + config.write_heads
        self.controller = build_controller(
            config.controller,
            config.input_size + reads,
            config.controller_size,
            config.controller_clip,
        )
        self.heads = HeadProjection(
            config.controller_size,
            config.read_heads,
            config.write_heads,
            config.memory_width,
            config.shift_range,
            config.controller_clip,
            location_first=config.location_first_init,
            beta_init=config.beta_init,
        )
        self.memory_init = MemoryInit(config.memory_slots, config.memory_width, config.memory_init)
        # Learned starting points (as Collier & Beel). Glorot-scale logits make the first
        # weighting visibly non-uniform: with a constant memory, content addressing cannot tell
        # slots apart, so this is what lets location addressing break the symmetry.
        bound = math.sqrt(6.0 / (1 + config.memory_slots))
        self.initial_weight_logits = nn.Parameter(
            torch.empty(heads, config.memory_slots).uniform_(-bound, bound)
        )
        self.initial_reads = nn.Parameter(torch.randn(config.read_heads, config.memory_width) * 0.5)
        self.readout = nn.Linear(config.controller_size + reads, config.output_size)

    def initial_state(self, batch: int, like: torch.Tensor) -> NTMState:
        """A fresh state for ``batch`` sequences: nothing carries over between sequences."""
        log_weights = torch.log_softmax(self.initial_weight_logits, dim=-1)
        return NTMState(
            memory=self.memory_init(batch, like),
            log_weights=log_weights.unsqueeze(0).expand(batch, -1, -1),
            reads=torch.tanh(self.initial_reads).unsqueeze(0).expand(batch, -1, -1),
            controller=self.controller.initial_state(batch, like),
        )

    def _step_to_fuse(self):
        """:meth:`step`, which :meth:`fuse_step` compiles. Only steps that build a graph for
        backward use it: evaluation (no grad) runs on other batch sizes, each of which would
        cost a compile of its own, and stays eager."""
        return self.step

    def step(self, inputs: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState]:
        """One time step: ``inputs [B,I]`` -> features ``[B, C + R*M]`` for the readout."""
        batch = inputs.shape[0]
        controller_in = torch.cat([inputs, state.reads.reshape(batch, -1)], dim=-1)
        features, controller_state = self.controller(controller_in, state.controller)
        params = self.heads(features)
        log_weights = address(
            state.memory,
            state.log_weights,
            params.keys,
            params.beta,
            params.gate_logit,
            params.log_shift,
            params.gamma,
        )
        weights = log_weights.exp()
        read_weights, write_weights = weights.split(
            [self.config.read_heads, self.config.write_heads], dim=1
        )
        reads = read(state.memory, read_weights)
        memory = write(state.memory, write_weights, params.erase, params.add)
        output_features = torch.cat([features, reads.reshape(batch, -1)], dim=-1)
        return output_features, NTMState(memory, log_weights, reads, controller_state)

    def forward(
        self, inputs: torch.Tensor, return_trace: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, NTMTrace]:
        """``inputs [B,T,I] -> logits [B,T,O]`` (and an :class:`NTMTrace` when asked)."""
        state = self.initial_state(inputs.shape[0], inputs)
        step = self.step
        if self.fused and torch.is_grad_enabled():
            step = self._fused_step
            # the first step's broadcast (stride-0) starting tensors would need a graph of
            # their own; contiguous copies share the one graph of every later step
            state = _contiguous(state)
        features, weights = [], []
        # unbind once: the backward of each inputs[:, t] slice would add a full [B,T,I] zero
        # tensor, which makes a long sequence quadratic (measured on the BN-LSTM)
        # time-major and contiguous: every step's input then has the same strides whatever
        # the length, so a compiled step is not recompiled for each new sequence length
        for step_inputs in _standard_strides(inputs.transpose(0, 1)).unbind(dim=0):
            output_features, state = step(step_inputs, state)
            features.append(output_features)
            if return_trace:
                weights.append(state.log_weights.exp())
        logits = self.readout(torch.stack(features, dim=1))
        if not return_trace:
            return logits
        all_weights = torch.stack(weights, dim=1)  # [B,T,H,N]
        read_weights, write_weights = all_weights.split(
            [self.config.read_heads, self.config.write_heads], dim=2
        )
        return logits, NTMTrace(read_weights, write_weights, state.memory)
