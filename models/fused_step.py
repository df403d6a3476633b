"""A module that trains through a compiled (fused) copy of its per-time-step function.

Recurrent models here run a Python loop over time steps, each a dozen or hundreds of tiny
kernels forward and backward. ``torch.compile`` of the step fuses them; because the step's
shapes depend on the batch size only, one graph serves every sequence length. The compiled
function is process-local: pickles and deep copies carry the eager module only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class FusedStep:
    """Mixin for an ``nn.Module`` (list it first): ``fuse_step`` compiles :meth:`_step_to_fuse`."""

    def _step_to_fuse(self) -> Callable:
        raise NotImplementedError

    def fuse_step(self, mode: str | None = None) -> None:
        """Train through a compiled copy of the step; ``mode`` is ``torch.compile``'s."""
        # compiled code is cached per function and guarded on this instance: a process that
        # builds model after model (an Optuna study) would hit Dynamo's recompile limit and
        # fall back to eager without a word, so start from empty caches (Inductor's on-disk
        # cache still makes a repeated graph cheap)
        torch.compiler.reset()
        self._fused_step = torch.compile(self._step_to_fuse(), dynamic=False, mode=mode)

    @property
    def fused(self) -> bool:
        return self.__dict__.get("_fused_step") is not None

    def __getstate__(self) -> dict:
        """Pickles and deep copies carry the eager module only (a compiled step is local)."""
        state = dict(super().__getstate__())
        state.pop("_fused_step", None)
        return state
