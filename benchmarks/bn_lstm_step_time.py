"""Seconds per training step (forward + backward) of the BN-LSTM over time, by sequence length.

    python -m benchmarks.bn_lstm_step_time --lengths 28 196 784 --batch_size 128
    python -m benchmarks.bn_lstm_step_time --lengths 784 --compile   # eager and fused

Random inputs of width 1 (the ``pixels`` view) or 28 (``rows``), state 100; the median of
``--repeats`` steps after one warm-up (which holds the compile, reported apart). A step should
grow linearly with the length. ``--compile`` times the fused step (``fuse_step``, what
``classify --compile true`` trains with) beside the eager one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import machine, save
from models.unfolded_lstm import RecurrentBNLSTM


def step_seconds(
    length: int, width: int, batch_size: int, repeats: int, fused: bool
) -> tuple[float, float]:
    """(median seconds per training step, seconds of the first step)."""
    torch.manual_seed(0)
    model = RecurrentBNLSTM(width, 100, steps=length)
    if fused:
        model.fuse_step()
    inputs, labels = torch.randn(batch_size, length, width), torch.randint(0, 10, (batch_size,))
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]), times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[28, 196, 784])
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the fused step")
    args = parser.parse_args()
    results = []
    for n in args.lengths:
        for fused in (False, True) if args.compile else (False,):
            seconds, first = step_seconds(n, args.width, args.batch_size, args.repeats, fused)
            results.append({"length": n, "fused": fused, "seconds": seconds, "first_s": first})
    print(f"machine: {machine()}")
    print("| length | step | s/step | ms per time step | first step s |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['length']} | {'fused' if r['fused'] else 'eager'} | {r['seconds']:.3f} | "
              f"{1000 * r['seconds'] / r['length']:.2f} | {r['first_s']:.1f} |")  # fmt: skip
    save("bn_lstm_step_time", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
