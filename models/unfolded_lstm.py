"""An LSTM unrolled through *depth*, and the BN-LSTM over time (Cooijmans et al. 2016).

Both use the batch-normalized LSTM step

    gates = BN_h(W_h h; gamma_h) + BN_x(W_x x; gamma_x) + b
    c'    = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h'    = sigmoid(o) * tanh(BN_c(c'; gamma_c, beta_c))

with each normalizer keeping per-step statistics (:class:`StepwiseBatchNorm`).

:class:`UnfoldedLSTM` asks whether an LSTM cell repeated through depth trains like a very deep
classifier: the whole image enters the first cell (``h = c = 0`` before it), then ``depth - 1``
more cells pass ``(h, c)`` on like time steps, each with its own weights (``tied=False``) or
all sharing one set (``tied=True``). A softmax classifier reads the last ``h``.

:class:`RecurrentBNLSTM` runs the same cell over the steps of a sequence (tied weights, an input
at every step): the paper's BN-LSTM for sequential MNIST.
"""

from __future__ import annotations

import torch
from torch import nn

from models.batch_norm import StepwiseBatchNorm
from models.fused_step import FusedStep

FORGET_BIAS = 1.0


def _orthogonal_gates(weight: torch.Tensor) -> None:
    """Orthogonal init of each of the four ``[hidden, in]`` gate blocks of ``[4*hidden, in]``."""
    for block in weight.chunk(4, dim=0):
        nn.init.orthogonal_(block)


def _lstm_bias(hidden: int) -> nn.Parameter:
    bias = torch.zeros(4 * hidden)
    bias[hidden : 2 * hidden] = FORGET_BIAS  # gate order i, f, g, o
    return nn.Parameter(bias)


def lstm_update(
    gates: torch.Tensor, c: torch.Tensor, norm_c: StepwiseBatchNorm | None, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h', c')`` from pre-activation ``gates`` ``[B, 4H]`` (order i, f, g, o); the new cell
    state is normalized with ``norm_c``'s statistics of ``step`` before the tanh (if given)."""
    o, c = lstm_cell_state(gates, c)
    shown = c if norm_c is None else norm_c(c, step)
    return torch.sigmoid(o) * torch.tanh(shown), c


def lstm_cell_state(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output gate's pre-activation and the new cell state from ``gates`` (i, f, g, o)."""
    i, f, g, o = gates.chunk(4, dim=1)
    return o, torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)


class UnfoldedLSTM(nn.Module):
    """Image ``[B, input_size]`` -> class logits ``[B, classes]`` through ``depth`` LSTM cells.

    Parameters (``H`` = hidden, ``D`` = depth, ``I`` = input size, BN on): the first cell has
    ``W_x`` (``4H x I``), a bias and ``gamma_x`` (``4H`` each); every later cell has ``W_h``
    (``4H x H``), a bias and ``gamma_h``; every cell has ``gamma_c`` and ``beta_c`` (``H``
    each). ``tied`` shares one later-cell set (``W_h``, bias, ``gamma_h``, ``gamma_c``,
    ``beta_c``) among cells 2..D, and the first cell keeps its own ``gamma_c``/``beta_c``.

    ``gamma_x``/``gamma_h``/``gamma_c`` start the three normalizers' scales (0.1, the paper's);
    ``norm_cell=False`` leaves the cell state unnormalized; ``input_init_gain`` scales the first
    matrix's Xavier init. Batch norm makes each cell invariant to its matrix's scale, so these
    settings move the gradient norms per layer (``benchmarks/unfolded_gradient_probe.py``).
    """

    def __init__(
        self,
        input_size: int = 784,
        hidden_size: int = 100,
        depth: int = 10,
        classes: int = 10,
        tied: bool = False,
        batch_norm: bool = True,
        dropout: float = 0.0,
        gamma_x: float = 0.1,
        gamma_h: float = 0.1,
        gamma_c: float = 0.1,
        norm_cell: bool = True,
        input_init_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth, self.tied, self.batch_norm = depth, tied, batch_norm
        hidden = hidden_size
        self.input_weight = nn.Parameter(torch.empty(4 * hidden, input_size))
        nn.init.xavier_uniform_(self.input_weight, gain=input_init_gain)
        self.input_bias = _lstm_bias(hidden)
        later = depth - 1
        copies = (1 if tied else later) if later else 0
        self.recurrent_weights = nn.ParameterList(
            [nn.Parameter(torch.empty(4 * hidden, hidden)) for _ in range(copies)]
        )
        for weight in self.recurrent_weights:
            _orthogonal_gates(weight)
        self.recurrent_biases = nn.ParameterList([_lstm_bias(hidden) for _ in range(copies)])
        if batch_norm:
            self.norm_x = StepwiseBatchNorm(4 * hidden, 1, gamma_init=gamma_x)
            self.norm_h = StepwiseBatchNorm(
                4 * hidden, max(later, 1), shared_affine=tied, gamma_init=gamma_h
            )
            if norm_cell:
                cell = {"shift": True, "gamma_init": gamma_c}
                first_c = StepwiseBatchNorm(hidden, 1, **cell)
                later_c = StepwiseBatchNorm(hidden, max(later, 1), shared_affine=tied, **cell)
                self.norm_c = nn.ModuleList([first_c, later_c])
        self.norm_cell = batch_norm and norm_cell
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, classes)

    def layer_weights(self) -> list[nn.Parameter]:
        """The weight matrix each cell uses, in depth order (one object repeats when tied)."""
        later = [self.recurrent_weights[0 if self.tied else i] for i in range(self.depth - 1)]
        return [self.input_weight, *later]

    def forward(self, x: torch.Tensor, return_states: bool = False):
        term = x @ self.input_weight.T
        if self.batch_norm:
            term = self.norm_x(term, 0)
        c = torch.zeros(x.shape[0], self.input_weight.shape[0] // 4, device=x.device, dtype=x.dtype)
        first_c, later_c = self.norm_c if self.norm_cell else (None, None)
        h, c = lstm_update(term + self.input_bias, c, first_c, 0)
        states = [h]
        for layer in range(1, self.depth):
            index = 0 if self.tied else layer - 1
            term = self.dropout(h) @ self.recurrent_weights[index].T
            if self.batch_norm:
                term = self.norm_h(term, layer - 1)
            h, c = lstm_update(term + self.recurrent_biases[index], c, later_c, layer - 1)
            states.append(h)
        logits = self.classifier(self.dropout(h))
        return (logits, states) if return_states else logits


# Variance floor of the BN-LSTM over time. MNIST's first and last rows are blank in almost every
# image, so at those steps a feature's batch variance is ~0 in most batches and large in the few
# with a stray ink pixel; eps 1e-5 turns that into batch-to-batch noise that no fixed (eval)
# statistic reproduces. With 1e-2, eval mode matched batch statistics in
# benchmarks/bn_lstm_eval_gap.py (79.0 % vs 78.8 %; 56.5 % vs 78.8 % without population
# statistics, 52.9 % vs 68.9 % with eps 1e-5).
SEQUENCE_BN_EPS = 1e-2


class RecurrentBNLSTM(FusedStep, nn.Module):
    """Sequence ``[B, T, input_size]`` -> class logits from the last ``h`` (BN-LSTM over time,
    per-time-step statistics for the first ``steps`` steps, the last ones reused beyond)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 100,
        steps: int = 28,
        classes: int = 10,
        batch_norm: bool = True,
        eps: float = SEQUENCE_BN_EPS,
    ) -> None:
        super().__init__()
        hidden = hidden_size
        self.input_weight = nn.Parameter(torch.empty(4 * hidden, input_size))
        nn.init.xavier_uniform_(self.input_weight)
        self.recurrent_weight = nn.Parameter(torch.empty(4 * hidden, hidden))
        _orthogonal_gates(self.recurrent_weight)
        self.bias = _lstm_bias(hidden)
        self.batch_norm, self.steps, self.hidden = batch_norm, steps, hidden
        if batch_norm:
            shared = {"shared_affine": True, "eps": eps}
            self.norm_x = StepwiseBatchNorm(4 * hidden, steps, **shared)
            self.norm_h = StepwiseBatchNorm(4 * hidden, steps, **shared)
            self.norm_c = StepwiseBatchNorm(hidden, steps, shift=True, **shared)
        self.classifier = nn.Linear(hidden, classes)

    def _step_to_fuse(self):
        """The step :meth:`fuse_step` compiles: it normalizes with the batch's statistics only
        (no step index, no buffer update), so one graph serves all 784 steps of a pixel
        sequence, and the running statistics are recorded outside it. Like the NTM's, it serves
        training (grad enabled, train mode) only: evaluation uses other statistics."""
        return self._batch_statistics_step

    def _batch_statistics_step(
        self, x_term: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """One training step normalized with the batch's statistics, which it returns."""
        h_term = h @ self.recurrent_weight.T
        x_term, x_mean, x_var = self.norm_x.normalize_batch(x_term)
        h_term, h_mean, h_var = self.norm_h.normalize_batch(h_term)
        o, c = lstm_cell_state(x_term + h_term + self.bias, c)
        shown, c_mean, c_var = self.norm_c.normalize_batch(c)
        return (
            torch.sigmoid(o) * torch.tanh(shown),
            c,
            (x_mean, x_var, h_mean, h_var, c_mean, c_var),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        inputs = x @ self.input_weight.T  # all steps at once: [B, T, 4H]
        h = x.new_zeros(batch, self.hidden)
        c = x.new_zeros(batch, self.hidden)
        fused = self.fused and self.batch_norm and self.training and torch.is_grad_enabled()
        if fused:  # a starting state that requires grad like every later one: one graph
            h, c = h.requires_grad_(), c.requires_grad_()
        # unbind, not inputs[:, t]: each slice's backward would add a full [B, T, 4H] zero
        # tensor, which makes a 784-step pixel sequence quadratic in its length
        for t, x_term in enumerate(inputs.unbind(dim=1)):
            step = min(t, self.steps - 1)
            if fused:
                h, c, statistics = self._fused_step(x_term, h, c)
                self._record(step, statistics, batch)
                continue
            h_term = h @ self.recurrent_weight.T
            if self.batch_norm:
                x_term, h_term = self.norm_x(x_term, step), self.norm_h(h_term, step)
            norm_c = self.norm_c if self.batch_norm else None
            h, c = lstm_update(x_term + h_term + self.bias, c, norm_c, step)
        return self.classifier(h)

    def _record(self, step: int, statistics: tuple[torch.Tensor, ...], batch: int) -> None:
        x_mean, x_var, h_mean, h_var, c_mean, c_var = statistics
        self.norm_x.record(step, x_mean, x_var, batch)
        self.norm_h.record(step, h_mean, h_var, batch)
        self.norm_c.record(step, c_mean, c_var, batch)
