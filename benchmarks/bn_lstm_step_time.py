"""Seconds per training step (forward + backward) of the BN-LSTM over time, by sequence length.

    python -m benchmarks.bn_lstm_step_time --lengths 28 196 784 --batch_size 128

Random inputs of width 1 (the ``pixels`` view) or 28 (``rows``), state 100; the median of
``--repeats`` steps after one warm-up. A step should grow linearly with the length.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import machine, save
from models.unfolded_lstm import RecurrentBNLSTM


def step_seconds(length: int, width: int, batch_size: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = RecurrentBNLSTM(width, 100, steps=length)
    inputs, labels = torch.randn(batch_size, length, width), torch.randint(0, 10, (batch_size,))
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[28, 196, 784])
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = [
        {"length": n, "seconds": step_seconds(n, args.width, args.batch_size, args.repeats)}
        for n in args.lengths
    ]
    print(f"machine: {machine()}")
    print("| length | s/step | ms per time step |")
    print("|---|---|---|")
    for r in results:
        print(f"| {r['length']} | {r['seconds']:.3f} | {1000 * r['seconds'] / r['length']:.2f} |")
    save("bn_lstm_step_time", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
