"""Scores for bit-sequence tasks, defined once so every model and report reads them the same way.

* ``loss``: mean binary cross-entropy over the scored bits (mask x output channels).
* ``bits_per_seq``: wrong bits after thresholding the output at 0.5, summed over the scored
  steps of a sequence and averaged over sequences (the NTM paper's cost).
* ``bit_acc``: ``1 - wrong bits / scored bits``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric


def masked_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean BCE over scored bits; computed from logits for numerical stability."""
    per_bit = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weights = mask.unsqueeze(-1).to(per_bit.dtype)
    scored_bits = weights.sum() * per_bit.shape[-1]
    return (per_bit * weights).sum() / scored_bits.clamp_min(1.0)


def wrong_bits_per_sequence(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Number of wrong bits in the scored steps of each sequence, ``[B]`` (int64).

    ``sigmoid(logit) > 0.5`` is exactly ``logit > 0``, so no sigmoid is needed.
    """
    predicted = logits > 0
    wrong = (predicted != (targets > 0.5)) & mask.unsqueeze(-1)
    return wrong.flatten(1).sum(dim=1)


def scored_bits_per_sequence(targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Number of scored bits of each sequence, ``[B]`` (int64)."""
    return mask.sum(dim=1) * targets.shape[-1]


class BitErrorRate(Metric):
    """Accumulates wrong bits, scored bits and sequences over batches (and DDP ranks)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("wrong", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("scored", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state(
            "sequences", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
        self.wrong += wrong_bits_per_sequence(logits, targets, mask).sum()
        self.scored += scored_bits_per_sequence(targets, mask).sum()
        self.sequences += targets.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        wrong = self.wrong.double()
        return {
            "bits_per_seq": wrong / self.sequences.clamp_min(1),
            "bit_acc": 1.0 - wrong / self.scored.clamp_min(1),
            "sequences": self.sequences,
        }


def selection_score(
    val_bits_per_seq: torch.Tensor,
    val_sequences: torch.Tensor,
    long_bits_per_seq: torch.Tensor | None = None,
    long_loss: torch.Tensor | None = None,
    long_sequences: torch.Tensor | None = None,
) -> torch.Tensor:
    """How good one validation's weights are, lower better: what the best checkpoint keeps.

    Without a long validation set it is ``val_bits_per_seq``, and of equal scores the monitor
    keeps the earlier (it replaces the best only on a strictly lower one). Breaking such ties
    by the lower loss was measured to keep worse models: a copy model reaches 0.000 bits/seq
    long before it generalizes, and the most confident one overfits the training lengths.

    With a long validation set (lengths beyond training) it is the sum of both sets' bits/seq,
    so generalization decides once the training lengths are solved, with ties broken by the
    long set's loss: bits/seq of ``n`` and ``m`` sequences are multiples of ``1 / (n m)``
    together, and the tie term ``tanh(loss) / (2 n m)`` is smaller than that step.
    """
    if long_bits_per_seq is None:
        return val_bits_per_seq.double()
    step = val_sequences.double().clamp_min(1) * long_sequences.double().clamp_min(1)
    total = val_bits_per_seq.double() + long_bits_per_seq.double()
    return total + torch.tanh(long_loss.double()) / (2 * step)


@torch.no_grad()
def score_batches(
    model: torch.nn.Module, batches, device: torch.device | str = "cpu", seed: int | None = None
) -> dict:
    """Loss, bits_per_seq and bit_acc of ``model`` over ``(inputs, targets, mask)`` batches.

    ``seed`` fixes the model's own randomness (an NTM's random starting memory) so the same
    model scores the same on every call, in any order; the caller's RNG state is restored.
    """
    if seed is not None:
        device = torch.device(device)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            return score_batches(model, batches, device)
    was_training = model.training
    model.eval()
    metric = BitErrorRate(sync_on_compute=False).to(device)  # this process's batches only
    loss_sum, bits = 0.0, 0
    for inputs, targets, mask in batches:
        inputs, targets, mask = inputs.to(device), targets.to(device), mask.to(device)
        logits = model(inputs)
        scored = int(scored_bits_per_sequence(targets, mask).sum())
        loss_sum += float(masked_bce_loss(logits, targets, mask)) * scored
        bits += scored
        metric.update(logits, targets, mask)
    model.train(was_training)
    computed = metric.compute()
    scores = {name: float(computed[name]) for name in ("bits_per_seq", "bit_acc")}
    scores["loss"] = loss_sum / max(bits, 1)
    return scores
