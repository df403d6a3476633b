"""Refuse, before anything starts, a model or data size that cannot fit in this machine's memory.

The estimate is a floor, not a forecast: float32 weights with their gradients and Adam's two
moments, plus one training batch of inputs and targets (every episode presents at least
``max_len`` input steps). A size above the machine's physical memory would otherwise end
minutes later in the allocator's ``RuntimeError``, after the run had opened.
"""

from __future__ import annotations

import os

import torch

from pipelines.common.config import ConfigError
from pipelines.sequence.build import make_core
from pipelines.sequence.config import TrainConfig

FLOAT_BYTES = 4
COPIES_PER_PARAMETER = 4  # weight, gradient, Adam's first and second moment


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parameter_count(config: TrainConfig, input_width: int, output_width: int) -> int:
    """Parameters of the core, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        core = make_core(config.model, input_width, output_width)
    return sum(parameter.numel() for parameter in core.parameters())


def check_fits_in_memory(config: TrainConfig, input_width: int, output_width: int) -> None:
    """ConfigError with the estimate when training clearly cannot fit in physical memory."""
    parameters = parameter_count(config, input_width, output_width)
    batch = (config.data.batch_size, config.data.max_len, input_width + output_width)
    needed = FLOAT_BYTES * (COPIES_PER_PARAMETER * parameters + batch[0] * batch[1] * batch[2])
    available = physical_memory_bytes()
    if needed > available:
        raise ConfigError(
            f"training needs at least {needed / 2**30:,.1f} GiB but this machine has "
            f"{available / 2**30:,.1f} GiB: {parameters:,} parameters of the {config.model.name} "
            f"(with gradients and Adam state) and batches of {batch[0]} x {batch[1]} steps x "
            f"{batch[2]} values (--bits {config.data.bits}, --batch_size, --max_len)"
        )
