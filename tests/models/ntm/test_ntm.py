"""The whole NTM: gradients, state isolation, batching, controllers and NaN safety."""

import pytest
import torch

from models.metrics import masked_bce_loss
from models.ntm import NTM, NTMConfig
from models.sequence_module import NonFiniteLossError, SequenceModule

TINY = dict(input_size=3, output_size=2, memory_slots=6, memory_width=4, controller_size=5)


def _model(seed=0, **options):
    torch.manual_seed(seed)
    return NTM(NTMConfig(**{**TINY, **options}))


@pytest.mark.parametrize("controller", ["lstm", "dense", "double_dense"])
def test_outputs_have_the_task_shape_for_every_controller(controller):
    model = _model(controller=controller, read_heads=2, write_heads=2)
    logits, trace = model(torch.rand(4, 7, 3), return_trace=True)
    assert logits.shape == (4, 7, 2)
    assert trace.read_weights.shape == (4, 7, 2, 6)
    assert trace.write_weights.shape == (4, 7, 2, 6)
    assert trace.memory.shape == (4, 6, 4)
    sums = torch.cat([trace.read_weights, trace.write_weights], dim=2).sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_gradcheck_of_a_full_step():
    model = _model(read_heads=2, write_heads=2).double()
    inputs = torch.rand(2, 3, dtype=torch.float64)
    state = model.initial_state(2, inputs)
    memory = (torch.rand(2, 6, 4, dtype=torch.float64) - 0.5).requires_grad_()
    log_weights = torch.log_softmax(torch.randn(2, 4, 6, dtype=torch.float64), -1)
    log_weights.requires_grad_()
    reads = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    inputs.requires_grad_()

    def step(inputs, memory, log_weights, reads):
        features, new = model.step(
            inputs, state._replace(memory=memory, log_weights=log_weights, reads=reads)
        )
        return features, new.memory, new.log_weights, new.reads

    assert torch.autograd.gradcheck(step, (inputs, memory, log_weights, reads))


def test_every_parameter_gets_a_finite_gradient():
    model = _model(read_heads=2, write_heads=2, memory_init="learned")
    inputs = torch.rand(3, 9, 3)
    loss = masked_bce_loss(model(inputs), torch.rand(3, 9, 2).round(), torch.ones(3, 9).bool())
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_batch_results_equal_per_item_results():
    model = _model()
    inputs = torch.rand(5, 8, 3)
    batched = model(inputs)
    for item in range(5):
        alone = model(inputs[item : item + 1])
        assert torch.allclose(batched[item : item + 1], alone, atol=1e-6)


def test_memory_state_does_not_leak_between_sequences():
    model = _model()
    probe = torch.rand(2, 6, 3)
    first = model(probe)
    model(torch.rand(2, 30, 3) * 5)  # a long unrelated sequence in between
    assert torch.equal(model(probe), first)
    _, trace_a = model(probe, return_trace=True)
    _, trace_b = model(probe[:1], return_trace=True)
    assert torch.allclose(trace_a.memory[:1], trace_b.memory, atol=1e-6)


def test_ntm_is_causal():
    model = _model()
    inputs = torch.rand(1, 8, 3)
    changed = inputs.clone()
    changed[:, 5:] = torch.rand(1, 3, 3)
    assert torch.allclose(model(inputs)[:, :5], model(changed)[:, :5])


def test_extreme_inputs_stay_finite():
    model = _model()
    for scale in (1e4, 1e8):
        logits = model(torch.rand(2, 10, 3) * scale)
        assert torch.isfinite(logits).all()


def _train_steps(module, steps, inputs, targets, mask):
    optimizer = module.configure_optimizers()
    for _ in range(steps):
        loss = module.training_step((inputs, targets, mask), 0)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), module.hparams.clip_value)
        optimizer.step()
    return loss


def test_no_nan_after_200_steps_with_an_extreme_learning_rate():
    module = SequenceModule(_model(), optimizer="adam", lr=10.0, clip_algorithm="norm")
    module.log = lambda *args, **kwargs: None  # no trainer attached
    inputs = torch.rand(4, 10, 3)
    targets = torch.rand(4, 10, 2).round()
    loss = _train_steps(module, 200, inputs, targets, torch.ones(4, 10).bool())
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_a_nan_loss_stops_training_with_a_clear_message():
    module = SequenceModule(_model())
    module.log = lambda *args, **kwargs: None
    inputs = torch.rand(2, 4, 3)
    inputs[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        module.training_step((inputs, torch.zeros(2, 4, 2), torch.ones(2, 4).bool()), 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory_slots": 0}, "memory_slots must be >= 1"),
        ({"shift_range": 4}, "shift_range must be in 0..2"),
        ({"controller": "gru"}, "unknown controller"),
        ({"memory_init": "zeros"}, "unknown memory init"),
    ],
)
def test_bad_configs_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        _model(**options)


def test_location_first_init_sets_gate_and_gamma_of_every_head():
    torch.manual_seed(0)
    model = NTM(NTMConfig(**TINY, read_heads=2, write_heads=1))
    params = model.heads(torch.zeros(1, TINY["controller_size"]))
    assert torch.allclose(torch.sigmoid(params.gate_logit), torch.full((1, 3), 0.1192), atol=1e-4)
    assert torch.allclose(params.gamma, torch.full((1, 3), 2.0))
    plain = NTM(NTMConfig(**TINY, location_first_init=False)).heads(torch.zeros(1, 5))
    # Linear's default bias init (|b| <= 1/sqrt(5)): gates near 0.5, far from 0.12
    assert (torch.sigmoid(plain.gate_logit) > 0.3).all()


def test_beta_init_sets_the_starting_key_strength_of_every_head_and_zero_keeps_linears():
    torch.manual_seed(0)
    model = NTM(NTMConfig(**TINY, read_heads=2, write_heads=2, beta_init=8.0))
    params = model.heads(torch.zeros(1, TINY["controller_size"]))
    assert torch.allclose(params.beta, torch.full((1, 4), 8.0))
    plain = NTM(NTMConfig(**TINY)).heads(torch.zeros(1, TINY["controller_size"]))
    # Linear's default bias: softplus(|b| <= 1/sqrt(5)) lies in 0.5..0.95
    assert ((plain.beta > 0.5) & (plain.beta < 0.95)).all()
    with pytest.raises(ValueError, match="beta_init must be >= 0"):
        NTM(NTMConfig(**TINY, beta_init=-1.0))
