"""Batch normalization with separate statistics per step (Cooijmans et al. 2016, section 3).

A recurrent or unfolded LSTM reuses its normalizers at every step (or layer), but the
statistics of step 1 differ from those of step 30, so each step keeps its own running mean and
variance. The affine scale ``gamma`` (initialized to 0.1, which the paper found essential to
avoid saturating the gates) and shift ``beta`` are shared over steps when the weights are tied,
and per step otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class StepwiseBatchNorm(nn.Module):
    """``BN(x; gamma, beta)`` over the batch with per-step running statistics.

    Args:
        features: feature count of ``x`` (``[B, features]``).
        steps: how many distinct steps keep statistics.
        shared_affine: one ``gamma``/``beta`` for all steps (tied weights) or one per step.
        shift: learn ``beta`` (the gate normalizers leave the shift to the LSTM's bias).
        gamma_init: starting ``gamma``.
    """

    def __init__(
        self,
        features: int,
        steps: int,
        shared_affine: bool = False,
        shift: bool = False,
        gamma_init: float = 0.1,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        copies = 1 if shared_affine else steps
        self.gamma = nn.Parameter(torch.full((copies, features), gamma_init))
        self.beta = nn.Parameter(torch.zeros(copies, features)) if shift else None
        self.register_buffer("running_mean", torch.zeros(steps, features))
        self.register_buffer("running_var", torch.ones(steps, features))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:
        if self.training:
            out, mean, var = self.normalize_batch(x, step)
            self.record(step, mean, var, x.shape[0])
            return out
        return self._normalize(x, self.running_mean[step], self.running_var[step], step)

    def normalize_batch(
        self, x: torch.Tensor, step: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training-mode ``BN(x)`` with the batch's statistics, which it also returns and
        does *not* record: a compiled step stays free of in-place buffer updates indexed by
        the step (:meth:`record` runs outside it)."""
        mean = x.mean(dim=0)
        var = x.var(dim=0, unbiased=False)
        return self._normalize(x, mean, var, step), mean, var

    @torch.no_grad()
    def record(self, step: int, mean: torch.Tensor, var: torch.Tensor, batch: int) -> None:
        """Fold one batch's statistics into the running statistics of ``step``."""
        unbiased = var * batch / max(batch - 1, 1)
        self.running_mean[step].lerp_(mean, self.momentum)
        self.running_var[step].lerp_(unbiased, self.momentum)

    def _normalize(
        self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, step: int
    ) -> torch.Tensor:
        index = 0 if self.gamma.shape[0] == 1 else step
        out = (x - mean) * torch.rsqrt(var + self.eps) * self.gamma[index]
        if self.beta is not None:
            out = out + self.beta[index]
        return out


@torch.no_grad()
def estimate_population_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set every :class:`StepwiseBatchNorm`'s running statistics in ``model`` to the plain
    average of its batch statistics over ``batches`` (inputs only); returns the batch count
    (0, without touching ``batches``, when the model has no such normalizer).

    Why: the running averages trail a model that changes every step, and in a recurrent net a
    step's statistics also depend on every earlier step's normalization, so small lags compound
    through time. Ioffe & Szegedy (2015) and Cooijmans et al. (2016) use population
    statistics averaged over training batches of the *trained* network; this computes exactly
    that. The rest of the model runs in eval mode (no dropout) so the statistics are those
    the network sees at test time.
    """
    norms = [module for module in model.modules() if isinstance(module, StepwiseBatchNorm)]
    if not norms:
        return 0  # nothing to estimate: do not spend forward passes
    modes = {module: module.training for module in model.modules()}
    momenta = [norm.momentum for norm in norms]
    count = 0
    try:
        model.eval()
        for norm in norms:
            norm.train()
        for count, inputs in enumerate(batches, start=1):
            for norm in norms:
                norm.momentum = 1.0 / count  # lerp by 1/k: the running value is the mean so far
            model(inputs)
    finally:
        for module, training in modes.items():
            module.training = training
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
    return count
