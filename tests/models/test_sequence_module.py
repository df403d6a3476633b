"""The sequence trainer's optimizer recipe: Adam's eps and the plateau decay."""

import pytest
import torch
from torch import nn

from models.sequence_module import SequenceModule


def module(**recipe) -> SequenceModule:
    return SequenceModule(nn.Linear(3, 2), optimizer="adam", lr=1e-2, **recipe)


def test_constant_rate_by_default_and_adam_gets_its_eps():
    optimizer = module(adam_eps=1e-6).configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["eps"] == 1e-6


def test_plateau_decay_halves_the_rate_after_patience_validations_without_a_new_best():
    config = module(lr_decay_patience=2).configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]
    assert schedule["monitor"] == "val_bits_per_seq" and schedule["interval"] == "epoch"
    plateau = schedule["scheduler"]
    for value in (5.0, 4.0, 4.0, 4.0):  # a new best, then two validations without one
        plateau.step(value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    plateau.step(4.0)  # the third without: past the patience
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
