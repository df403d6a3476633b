"""Probe an NTM training recipe on copy: validation bits/seq every 100 steps until converged.

    python -m benchmarks.ntm_recipe_probe --batch_size 32 --lr 3e-3 --seed 1 --max_sequences 100000

A bare training loop (one thread, no Lightning, no MLflow) so two probes can share the 2 cores
and be compared by *sequences seen*, not wall-clock. Validation: 500 fixed sequences, lengths
1..20. Prints one line per 100 steps and stops at bits_per_seq <= 0.1.
"""

from __future__ import annotations

import argparse
import time

import torch

from datamodules.synthetic import CopyTask, SyntheticDataModule, make_test_set, seeded_generator
from models.metrics import masked_bce_loss, score_batches
from models.ntm import NTM, NTMConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_sequences", type=int, default=150_000)
    parser.add_argument("--memory_init", default="constant")
    parser.add_argument("--no_location_first", action="store_true")
    parser.add_argument("--clip_norm", type=float, default=10.0)
    parser.add_argument(
        "--train_past", type=int, default=0, help="sequences to keep training after converging"
    )
    parser.add_argument(
        "--test_lengths",
        type=int,
        nargs="*",
        default=[],
        help="score 200 sequences at each of these lengths at the end",
    )
    parser.add_argument("--controller", default="lstm", choices=("lstm", "dense", "double_dense"))
    parser.add_argument("--controller_size", type=int, default=100)
    parser.add_argument("--controller_clip", type=float, default=20.0)
    parser.add_argument(
        "--curriculum_start",
        type=int,
        default=0,
        help="longest training length at step 0 (0: no curriculum)",
    )
    parser.add_argument(
        "--curriculum_every",
        type=int,
        default=25,
        help="steps between +1 increments of the longest training length",
    )
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam's second-moment decay")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    task = CopyTask()
    validation = SyntheticDataModule(task, val_size=500, seed=0).val_batches()
    model = NTM(
        NTMConfig(task.input_width, task.output_width, memory_init=args.memory_init,
                  location_first_init=not args.no_location_first,
                  controller=args.controller, controller_size=args.controller_size,
                  controller_clip=args.controller_clip)
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), args.lr, betas=(0.9, args.beta2))
    generator = seeded_generator(args.seed, 0)
    started, sequences, step, converged_at = time.perf_counter(), 0, 0, None
    longest = task.max_len
    while sequences < args.max_sequences:
        if args.curriculum_start:
            task.max_len = min(longest, args.curriculum_start + step // args.curriculum_every)
        lengths = task.sample_lengths(1, generator).expand(args.batch_size)
        inputs, targets, mask = task.generate(lengths, generator)
        loss = masked_bce_loss(model(inputs), targets, mask)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
        optimizer.step()
        sequences += args.batch_size
        step += 1
        if step % 100 == 0:
            scores = score_batches(model, validation)
            print(
                f"{time.perf_counter() - started:7.1f}s step {step} sequences {sequences} "
                f"val_bits_per_seq {scores['bits_per_seq']:.3f}",
                flush=True,
            )
            if converged_at is None and scores["bits_per_seq"] <= 0.1:
                converged_at = sequences
                print(f"converged after {sequences} sequences", flush=True)
            if converged_at is not None and sequences >= converged_at + args.train_past:
                break
    if converged_at is None:
        print(f"not converged after {sequences} sequences")
    for length in args.test_lengths:
        test = make_test_set(task, length, 200, 100, seed=7)
        scores = score_batches(model, test)
        print(f"length {length}: bit_acc {scores['bit_acc']:.5f} bits {scores['bits_per_seq']:.3f}")


if __name__ == "__main__":
    main()
