"""Reproduce the NTM collapse diagnosis: a gradient spike from content addressing of unwritten
memory rows, then a fall to chance, and how the cosine eps changes it.

    python -m benchmarks.ntm_gradient_spike --cosine_eps 1e-8
    python -m benchmarks.ntm_gradient_spike --cosine_eps 1e-3

Bare loop, seed 2, dense controller, Adam 3e-3, batch 32, clip norm 10, 2 threads (the setting
in which the collapse was found). Prints every step from ``--watch_from`` on, and every 20th
step before it after step 400: the batch length, loss, gradient norm before clipping, the
three largest per-parameter gradient norms and validation bits/seq on 200 fixed sequences.
"""

from __future__ import annotations

import argparse

import torch

import models.ntm.addressing as addressing
from benchmarks.common import machine
from datamodules.synthetic import CopyTask, SyntheticDataModule, seeded_generator
from models.metrics import masked_bce_loss, score_batches
from models.ntm import NTM, NTMConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cosine_eps", type=float, required=True)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--watch_from", type=int, default=498)
    parser.add_argument("--watch_to", type=int, default=511)
    args = parser.parse_args()
    addressing.COSINE_EPS = args.cosine_eps
    torch.manual_seed(2)
    torch.set_num_threads(2)
    task = CopyTask()
    validation = SyntheticDataModule(task, val_size=200, seed=0).val_batches()
    model = NTM(NTMConfig(task.input_width, task.output_width, controller="dense"))
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    generator = seeded_generator(2, 0)
    print(f"machine: {machine()}; cosine eps {args.cosine_eps:g}")
    for step in range(1, args.steps + 1):
        length = task.sample_lengths(1, generator)
        inputs, targets, mask = task.generate(length.expand(32), generator)
        loss = masked_bce_loss(model(inputs), targets, mask)
        optimizer.zero_grad()
        loss.backward()
        grads = {name: float(p.grad.norm()) for name, p in model.named_parameters()}
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0))
        optimizer.step()
        watched = args.watch_from <= step <= args.watch_to
        if watched or (step > 400 and step % 20 == 0):
            bits = float(score_batches(model, validation)["bits_per_seq"])
            top = sorted(grads.items(), key=lambda item: -item[1])[:3]
            largest = [(name, round(grad, 2)) for name, grad in top]
            print(f"step {step} len {int(length)} loss {loss.item():.3f} grad {norm:.2f} "
                  f"val {bits:.2f} top {largest}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
