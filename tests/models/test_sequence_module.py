"""The sequence trainer's optimizer recipe: Adam's eps and the plateau decay."""

from types import SimpleNamespace

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


def test_restart_from_loads_fresh_weights_and_resets_the_optimizer_the_rate_and_the_decay():
    trained = module(lr_decay_patience=1)
    config = trained.configure_optimizers()
    optimizer, plateau = config["optimizer"], config["lr_scheduler"]["scheduler"]
    trained._trainer = SimpleNamespace(
        optimizers=[optimizer], lr_scheduler_configs=[SimpleNamespace(scheduler=plateau)]
    )
    trained.model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    for _ in range(4):  # a best, then no new best: the rate halves
        plateau.step(1.0)
    assert optimizer.param_groups[0]["lr"] < 1e-2 and optimizer.state
    weights = trained.model.weight
    fresh = {
        name: torch.full_like(value, 0.5) for name, value in trained.model.state_dict().items()
    }

    trained.restart_from(fresh)

    assert trained.model.weight is weights, "copied in place: a compiled step keeps its tensors"
    assert torch.equal(trained.model.weight, torch.full((2, 3), 0.5))
    assert not optimizer.state, "Adam's moments start afresh"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert plateau.best == float("inf") and plateau.num_bad_epochs == 0
    plateau.step(1.0)  # 1.0 is a new best for the fresh start: the rate stays
    plateau.step(1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)


def test_roll_back_to_loads_earlier_weights_at_half_the_rate_and_keeps_the_moments():
    trained = module()
    optimizer = trained.configure_optimizers()
    trained._trainer = SimpleNamespace(optimizers=[optimizer], lr_scheduler_configs=[])
    trained.model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    moments = {k: v.clone() for k, v in optimizer.state[trained.model.weight].items()}
    earlier = {name: torch.zeros_like(value) for name, value in trained.model.state_dict().items()}

    trained.roll_back_to(earlier)

    assert torch.equal(trained.model.weight, torch.zeros(2, 3))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    for name, value in optimizer.state[trained.model.weight].items():
        assert torch.equal(value, moments[name]), name
