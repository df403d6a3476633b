"""The check every compiled (fused) step shares: the same outputs and gradients as the eager
module, from exactly one new graph."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch._dynamo.utils import counters


def assert_fused_equals_eager(
    eager: nn.Module, fused: nn.Module, loss_of: Callable[[nn.Module], tuple[torch.Tensor, ...]]
) -> None:
    """``loss_of(model)`` returns ``(outputs, loss)``; the fused model must compile one graph
    (a silent fallback to eager would compile none) and match eager to 1e-5."""
    outputs = {}
    for name, model in (("eager", eager), ("fused", fused)):
        graphs = counters["stats"]["unique_graphs"]
        result, loss = loss_of(model)
        loss.backward()
        outputs[name] = result.detach()
        compiled = counters["stats"]["unique_graphs"] - graphs
        assert compiled == (1 if name == "fused" else 0), (name, compiled)
    assert torch.allclose(outputs["fused"], outputs["eager"], atol=1e-5, rtol=0)
    for (name, p_eager), (_, p_fused) in zip(
        eager.named_parameters(), fused.named_parameters(), strict=True
    ):
        assert torch.allclose(p_fused.grad, p_eager.grad, atol=1e-5, rtol=0), name
