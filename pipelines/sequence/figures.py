"""Matplotlib figures of what a model does, and a callback that logs them while training."""

from __future__ import annotations

import time
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files, never to a window

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

from datamodules.tasks import SequenceBatch
from models.ntm import NTM, NTMTrace

LogFigure = Callable[[Figure, str], None]


def _heatmap(axis, matrix: torch.Tensor, title: str, ylabel: str, vmin=0.0, vmax=1.0):
    image = axis.imshow(
        matrix.detach().cpu().float().numpy(),
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        vmin=vmin,
        vmax=vmax,
    )
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    return image


def sequence_figure(example: SequenceBatch, outputs: torch.Tensor, title: str) -> Figure:
    """Input, target and output (probabilities) of one sequence, time on the x axis.

    Unscored output steps are greyed out so the eye reads only what is scored.
    """
    inputs, targets, mask = (tensor[0] for tensor in example)
    probabilities = outputs[0].detach().cpu().float()
    masked = probabilities.masked_fill(~mask.cpu()[:, None], float("nan"))
    figure, axes = plt.subplots(3, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)
    _heatmap(axes[0], inputs.T, "input", "channel")
    _heatmap(axes[1], targets.T, "target", "bit")
    image = _heatmap(axes[2], masked.T, "output (scored steps)", "bit")
    axes[2].set_facecolor("0.85")
    axes[2].set_xlabel("time step")
    figure.colorbar(image, ax=axes, label="value / probability", shrink=0.8)
    figure.suptitle(title)
    return figure


def memory_figure(trace: NTMTrace, title: str) -> Figure:
    """Each head's weighting over time (slot x step) and the memory after the last step."""
    read_weights, write_weights, memory = (
        trace.read_weights[0],
        trace.write_weights[0],
        trace.memory[0],
    )
    panels = [(f"read head {h}", read_weights[:, h]) for h in range(read_weights.shape[1])]
    panels += [(f"write head {h}", write_weights[:, h]) for h in range(write_weights.shape[1])]
    figure, axes = plt.subplots(
        1, len(panels) + 1, figsize=(4 * (len(panels) + 1), 4.5), constrained_layout=True
    )
    for axis, (name, weights) in zip(axes, panels, strict=False):
        image = _heatmap(axis, weights.T, f"{name} weighting", "memory slot")
        axis.set_xlabel("time step")
    figure.colorbar(image, ax=axes[: len(panels)], label="weight", shrink=0.8)
    limit = float(memory.abs().max()) or 1.0
    image = axes[-1].imshow(
        memory.detach().cpu().float().numpy(),
        aspect="auto",
        interpolation="nearest",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
    )
    axes[-1].set_title("memory after the last step")
    axes[-1].set_xlabel("memory column")
    axes[-1].set_ylabel("memory slot")
    figure.colorbar(image, ax=axes[-1], label="value", shrink=0.8)
    figure.suptitle(title)
    return figure


class SequenceFigureLogger(pl.Callback):
    """Logs :func:`sequence_figure` for a fixed example every ``every_n_val`` validations.

    For an NTM it also logs :func:`memory_figure` (head weightings and memory) of that example.
    """

    def __init__(self, example: SequenceBatch, log_figure: LogFigure, every_n_val: int = 5) -> None:
        self.example = example
        self.log_figure = log_figure
        self.every_n_val = every_n_val
        self._validations = 0
        self.draw_seconds = 0.0  # time spent rendering figures (part of logging overhead)

    def draw(self, module: pl.LightningModule, title: str) -> dict[str, Figure]:
        """``{"example": figure, ["memory": figure]}`` for the fixed example."""
        started = time.perf_counter()
        was_training = module.training
        module.eval()
        inputs = self.example.inputs.to(module.device)
        with torch.no_grad():
            if isinstance(module.model, NTM):
                logits, trace = module.model(inputs, return_trace=True)
            else:
                logits, trace = module.model(inputs), None
        module.train(was_training)
        figures = {"example": sequence_figure(self.example, torch.sigmoid(logits), title)}
        if trace is not None:
            figures["memory"] = memory_figure(trace, title)
        self.draw_seconds += time.perf_counter() - started
        return figures

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self._validations += 1
        if self._validations % self.every_n_val:
            return
        step = trainer.global_step
        self._log(self.draw(module, f"validation example, step {step}"), f"step_{step:07d}")

    def _log(self, figures: dict[str, Figure], suffix: str) -> None:
        for kind, figure in figures.items():
            try:
                self.log_figure(figure, f"plots/{kind}_{suffix}.png")
            finally:
                plt.close(figure)

    def log_final(self, module: pl.LightningModule, step: int) -> None:
        self._log(self.draw(module, f"validation example, final (step {step})"), "final")
