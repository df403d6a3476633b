"""Where one NTM training iteration's time goes, and which lever shortens it.

    python -m benchmarks.ntm_iteration --variants eager compiled compiled-1thread --iterations 150

A bare loop, no Lightning and no logging, over the default copy NTM (batch 64, lengths 1..20,
the train pipeline's own model and data): forward (every step and the readout), loss, backward,
gradient clipping and the Adam step, timed apart (wall-clock, after ``--warmup`` iterations that
hold the compile). Variants:

- ``eager``: the reference path.
- ``compiled``: ``NTM.fuse_step`` as ``train --compile true`` uses it.
- ``compiled-1thread``: the same on one intra-op thread (``torch.set_num_threads(1)``).
- ``compiled-cpp``: Inductor's C++ wrapper (``cpp_wrapper``), which calls the step's kernels
  from C++ instead of Python.
- ``compiled-optimizer``: also the clip + Adam step compiled into one graph.
- ``compiled-autotune``: ``mode="max-autotune-no-cudagraphs"`` (Inductor benchmarks kernel
  choices, GEMM templates included, at compile time).

Each variant runs in a fresh process (a compile, a thread count), with the same seed and data.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from benchmarks.common import machine, save

VARIANTS = (
    "eager",
    "compiled",
    "compiled-1thread",
    "compiled-cpp",
    "compiled-optimizer",
    "compiled-autotune",
)
WARMUP = 20  # iterations before the timing starts: they hold the compile
PARTS = ("data", "forward", "loss", "backward", "clip", "optimizer")


def endless_batches(data):
    """Training batches across epochs, as the pipeline draws them: the loader holds one
    epoch (``batches_per_epoch``), so a run longer than that starts the next."""
    while True:
        yield from data.train_dataloader()


def measure(variant: str, iterations: int, warmup: int, seed: int) -> dict:
    """Runs in the child process: time ``iterations`` training iterations of ``variant``."""
    from models.metrics import masked_bce_loss
    from pipelines.common.config import parse_config
    from pipelines.sequence.build import make_datamodule, make_module, make_task
    from pipelines.sequence.config import TrainConfig

    if variant == "compiled-1thread":
        torch.set_num_threads(1)
    if variant == "compiled-cpp":
        import torch._inductor.config as inductor_config

        inductor_config.cpp_wrapper = True
    compiled = variant != "eager"
    config = parse_config(TrainConfig, ["--model", "ntm", "--compile", str(compiled).lower()])
    task = make_task(config.data)
    torch.manual_seed(seed)
    module = make_module(config, task)
    model = module.model
    if variant == "compiled-autotune":
        model.fuse_step(mode="max-autotune-no-cudagraphs")
    data = make_datamodule(config, task)
    data.setup("fit")
    batches = endless_batches(data)
    parameters = list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.optim.lr, eps=config.optim.adam_eps)
    clip = config.optim.clip_value

    def update() -> None:
        torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()

    step = torch.compile(update) if variant == "compiled-optimizer" else None
    totals = dict.fromkeys(PARTS, 0.0)
    sequences = 0
    started = time.perf_counter()
    for index in range(warmup + iterations):
        if index == warmup:
            totals = dict.fromkeys(PARTS, 0.0)
            sequences, started = 0, time.perf_counter()
        marks = [time.perf_counter()]
        inputs, targets, mask = next(batches)
        marks.append(time.perf_counter())
        logits = model(inputs)
        marks.append(time.perf_counter())
        loss = masked_bce_loss(logits, targets, mask)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        if step is not None:
            step()
            marks += [marks[-1], time.perf_counter()]
        else:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
            marks.append(time.perf_counter())
            optimizer.step()
            marks.append(time.perf_counter())
        for part, (begin, end) in zip(PARTS, itertools.pairwise(marks), strict=True):
            totals[part] += end - begin
        sequences += inputs.shape[0]
    wall = time.perf_counter() - started
    per_iteration = {part: 1000 * seconds / iterations for part, seconds in totals.items()}
    return {
        "variant": variant,
        "threads": torch.get_num_threads(),
        "seq_per_s": sequences / wall,
        "ms_per_iteration": 1000 * wall / iterations,
        "ms": per_iteration,
    }


def run_child(
    variant: str,
    iterations: int,
    warmup: int = WARMUP,
    seed: int = 0,
    env: dict[str, str] | None = None,
) -> dict:
    """:func:`measure` of ``variant`` in a fresh process (its own compile and thread count)."""
    command = [sys.executable, "-m", "benchmarks.ntm_iteration", "--child", variant]
    command += ["--iterations", str(iterations), "--warmup", str(warmup), "--seed", str(seed)]
    environment = None if env is None else {**os.environ, **env}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.iterations, args.warmup, args.seed)))
        return

    results = []
    for variant in args.variants:
        results.append(run_child(variant, args.iterations, args.warmup, args.seed))
        print(f"{variant}: {results[-1]['seq_per_s']:.0f} seq/s", flush=True)
    eager = next((r["seq_per_s"] for r in results if r["variant"] == "eager"), None)
    print(f"machine: {machine()}")
    print("| variant | threads | seq/s | vs eager | ms/iter | " + " | ".join(PARTS) + " |")
    print("|" + "---|" * (5 + len(PARTS)))
    for r in results:
        ratio = f"{r['seq_per_s'] / eager:.2f}x" if eager else "-"
        parts = " | ".join(f"{r['ms'][part]:.1f}" for part in PARTS)
        print(
            f"| {r['variant']} | {r['threads']} | {r['seq_per_s']:.0f} | {ratio} | "
            f"{r['ms_per_iteration']:.1f} | {parts} |"
        )
    print(f"median seq/s {statistics.median(r['seq_per_s'] for r in results):.0f}")
    save("ntm_iteration", {"argv": sys.argv[1:], "results": results})


if __name__ == "__main__":
    main()
