"""Name -> object: builds tasks, data modules and models from a validated TrainConfig."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from datamodules.curriculum import LengthCurriculum
from datamodules.synthetic import SyntheticDataModule, SyntheticTask, build_task
from models.lstm import LSTMSequenceModel
from models.ntm import NTM, NTMConfig
from models.sequence_module import SequenceModule
from pipelines.common.config import ConfigError, model_options
from pipelines.sequence.config import (
    DataConfig,
    ModelConfig,
    TrainConfig,
    long_val_lengths,
    task_options,
)


def make_task(data: DataConfig) -> SyntheticTask:
    """The task generator named by ``data.task``; generator errors become ConfigErrors."""
    try:
        return build_task(data.task, **task_options(data))
    except ValueError as error:
        raise ConfigError(str(error)) from error


def curriculum_of(data: DataConfig) -> LengthCurriculum | None:
    """The training stream's length curriculum, or None when it is off."""
    steps = data.curriculum_steps_per_length
    return LengthCurriculum(steps) if steps else None


def make_datamodule(config: TrainConfig, task: SyntheticTask) -> SyntheticDataModule:
    data = config.data
    try:
        return SyntheticDataModule(
            task,
            batch_size=data.batch_size,
            batches_per_epoch=data.batches_per_epoch,
            val_size=data.val_size,
            eval_batch_size=data.eval_batch_size,
            test_lengths=data.test_lengths,
            test_size=data.test_size,
            seed=config.seed,
            curriculum=curriculum_of(data),
            long_val_lengths=long_val_lengths(data),
            long_val_size=data.long_val_size,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error


def make_core(model: ModelConfig, input_width: int, output_width: int) -> nn.Module:
    """The pure ``torch.nn.Module`` for ``model.name``."""
    # ModelConfig fields tagged models=("ntm",) / ("lstm",) carry the constructors' own names
    if model.name == "ntm":
        options = model_options(model, "ntm")
        return NTM(NTMConfig(input_size=input_width, output_size=output_width, **options))
    if model.name == "lstm":
        return LSTMSequenceModel(input_width, output_width, **model_options(model, "lstm"))
    raise ConfigError(f"--model: {model.name!r} is not a sequence model")


def fresh_core_state(config: TrainConfig, task: SyntheticTask, restart: int) -> dict:
    """The weights a new core starts from at restart ``restart`` (1, 2, ...): a seed of its
    own, derived from the run's seed and the restart's number, so a run repeats exactly and no
    restart shares its start with another seed's run. The global RNG is left as it was."""
    seed = int(np.random.SeedSequence([config.seed, restart]).generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_core(config.model, task.input_width, task.output_width).state_dict()


def make_module(config: TrainConfig, task: SyntheticTask) -> SequenceModule:
    core = make_core(config.model, task.input_width, task.output_width)
    if config.trainer.compile and isinstance(core, NTM):
        # Inductor's default mode on every device. "reduce-overhead" (CUDA graphs) is not used:
        # the step's outputs feed its next call before backward, which CUDA-graph replays
        # overwrite, and that path has not been made safe or measured on a GPU
        core.fuse_step()
    optim = config.optim
    return SequenceModule(
        core,
        optimizer=optim.optimizer,
        lr=optim.lr,
        momentum=optim.momentum,
        rmsprop_alpha=optim.rmsprop_alpha,
        clip_algorithm=optim.clip_algorithm,
        clip_value=optim.clip_value,
        adam_eps=optim.adam_eps,
        lr_decay_patience=optim.lr_decay_patience,
        lr_decay_floor=optim.lr_decay_floor,
    )


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())
