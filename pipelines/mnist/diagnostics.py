"""Figures for the depth study: gradient norm per layer over training, first-layer filters."""

from __future__ import annotations

import math
import statistics

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def gradient_ratio_summary(
    history: list[tuple[int, list[float]]], sizes: list[int]
) -> dict[str, float]:
    """First-to-last-layer gradient ratios: at the last logged step, and medians over training.

    The final-step ratio is one batch's, so it is noisy; the median says how the ratio *stays*,
    and the median over the last tenth of the logged points (at least one) where training ends
    (the ratio drifts upwards over training, so the whole-run median understates the end).
    The RMS ratio divides each norm by sqrt(#weights): the first unfolded-LSTM matrix is
    ``4H x 784`` and the later ones ``4H x H``, so part of the plain norm ratio is only shape.
    """
    if not history:
        return {}
    ratios = [norms[0] / max(norms[-1], 1e-12) for _, norms in history]
    median = statistics.median(ratios)
    last_tenth = ratios[-max(1, len(ratios) // 10) :]
    return {
        "grad_norm_ratio_first_last": ratios[-1],
        "grad_norm_ratio_first_last_median": median,
        "grad_norm_ratio_first_last_end_median": statistics.median(last_tenth),
        "grad_rms_ratio_first_last_median": median * math.sqrt(sizes[-1] / sizes[0]),
    }


def gradient_norm_figure(history: list[tuple[int, list[float]]], title: str) -> Figure:
    """Gradient norm (log scale) against layer, one line per point of training (up to 6)."""
    figure, axis = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    picks = sorted({round(i * (len(history) - 1) / 5) for i in range(6)}) if history else []
    for index in picks:
        step, norms = history[index]
        axis.plot(range(1, len(norms) + 1), norms, marker="o", label=f"step {step}")
    axis.set_yscale("log")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("layer (1 = input)")
    axis.set_ylabel("gradient norm of the layer's weights")
    axis.set_title(f"{title}: gradient norm by layer")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    return figure


def filters_figure(weight: torch.Tensor, title: str, count: int = 64) -> Figure:
    """The first ``count`` rows (or conv kernels) of the input weights as 28x28 (or kxk) tiles."""
    weight = weight.detach().cpu().float()
    # conv kernels [out, 1, k, k]; dense rows over the 784 pixels (an LSTM's input gate first)
    tiles = weight[:count, 0] if weight.dim() == 4 else weight[:count].reshape(-1, 28, 28)
    columns = 8
    rows = math.ceil(len(tiles) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns, rows), constrained_layout=True)
    for axis, tile in zip(axes.flat, tiles, strict=False):
        limit = float(tile.abs().max()) or 1.0
        axis.imshow(tile.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.suptitle(f"{title}: first-layer input weights (red +, blue -)")
    return figure
