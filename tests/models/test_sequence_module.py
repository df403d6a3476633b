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


def test_the_decay_floor_stops_the_halving_at_its_fraction_of_the_starting_rate():
    config = module(lr_decay_patience=1, lr_decay_floor=0.25).configure_optimizers()
    optimizer, plateau = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(20):  # no new best ever after the first: a halving every second step
        plateau.step(1.0)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[2] == pytest.approx(5e-3), "it still halves above the floor"
    assert min(rates) == pytest.approx(2.5e-3) and rates[-1] == pytest.approx(2.5e-3)
    with pytest.raises(ValueError, match="lr_decay_floor"):
        module(lr_decay_floor=1.5)
