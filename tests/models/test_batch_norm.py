"""Per-step batch normalization and the population statistics used in eval mode."""

import torch
from torch import nn

from models.batch_norm import StepwiseBatchNorm, estimate_population_statistics
from models.unfolded_lstm import RecurrentBNLSTM, UnfoldedLSTM


class _TwoSteps(nn.Module):
    """Step 0 sees ``x``, step 1 sees ``2x + 1``; a dropout shows which mode each part is in."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = StepwiseBatchNorm(3, steps=2)
        self.dropout = nn.Dropout(0.5)
        self.dropout_was_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.dropout_was_training.append(self.dropout.training)
        return self.norm(x, 0) + self.norm(2 * x + 1, 1)


def test_population_statistics_are_the_plain_average_of_batch_statistics():
    torch.manual_seed(0)
    batches = [torch.randn(16, 3) * (index + 1) + index for index in range(5)]
    model = _TwoSteps()
    model.train()
    count = estimate_population_statistics(model, iter(batches))
    assert count == 5
    for step, transform in enumerate((lambda x: x, lambda x: 2 * x + 1)):
        seen = [transform(batch) for batch in batches]
        expected_mean = torch.stack([x.mean(0) for x in seen]).mean(0)
        expected_var = torch.stack([x.var(0, unbiased=True) for x in seen]).mean(0)
        torch.testing.assert_close(model.norm.running_mean[step], expected_mean)
        torch.testing.assert_close(model.norm.running_var[step], expected_var)
    # dropout was off while the statistics were gathered; every mode and momentum is restored
    assert model.dropout_was_training == [False] * 5
    assert model.training and model.dropout.training and model.norm.training
    assert model.norm.momentum == 0.1


def test_steps_a_batch_never_reaches_keep_their_statistics():
    model = RecurrentBNLSTM(2, 4, steps=6)
    before = model.norm_x.running_mean[4:].clone()
    estimate_population_statistics(model, [torch.randn(8, 3, 2)])  # steps 0..2 only
    torch.testing.assert_close(model.norm_x.running_mean[4:], before)
    assert not torch.equal(model.norm_x.running_mean[:3], torch.zeros(3, 16))


def _population_matches_batch_statistics(model: nn.Module, sample) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        estimate_population_statistics(model, (sample(256) for _ in range(40)))
        fresh = sample(4096)
        model.eval()
        with_population = model(fresh)
        for norm in model.modules():  # batch statistics, but no dropout
            if isinstance(norm, StepwiseBatchNorm):
                norm.train()
        with_batch = model(fresh)
    gap = (with_population - with_batch).abs() / with_batch.std()
    # measured: mean 0.2-1 %, max 1-6 % of the logits' spread (the max is in saturating tails)
    assert gap.mean() < 0.02 and gap.max() < 0.15


def test_eval_with_population_statistics_matches_batch_statistics_over_time():
    """What the running averages got wrong on MNIST rows (a retired benchmark, docs/results-log.md):
    on one fixed input distribution, eval mode must give what batch statistics give."""
    model = RecurrentBNLSTM(5, 16, steps=10)
    _population_matches_batch_statistics(model, lambda n: torch.randn(n, 10, 5))


def test_eval_with_population_statistics_matches_batch_statistics_through_depth():
    model = UnfoldedLSTM(20, 16, depth=8, dropout=0.3)
    _population_matches_batch_statistics(model, lambda n: torch.rand(n, 20))


def test_a_model_without_stepwise_normalizers_costs_no_forward_pass():
    def batches():
        raise AssertionError("no batch should be drawn")
        yield  # pragma: no cover

    assert estimate_population_statistics(nn.Linear(3, 2), batches()) == 0
