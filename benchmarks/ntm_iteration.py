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

    python -m benchmarks.ntm_iteration --variants eager compiled --iterations 1000 --inside_pipeline

``--inside_pipeline`` times the ``eager`` or ``compiled`` iteration inside one
``pipelines.train`` run instead (``--iterations`` Lightning batches after a first block that
holds the compile). Comparing a pipeline run with bare loops in other processes cannot tell
Lightning's cost per batch from the drift of a machine whose speed moves 10-20 % within
minutes; here the run alternates ``--block`` Lightning batches, each timed from
``on_train_batch_start`` to ``on_train_batch_end`` (training step, backward, the module's
clipping, the optimizer step, logging, callbacks), with the same batches again as bare
iterations of the same model and optimizer, so drift touches both alike. The time between two
Lightning batches (data loader, loop, validations) is reported apart. The bare blocks are real
optimizer steps on repeated batches: they change the trajectory, not the cost of a step.
Arguments after ``--`` go to the train run (MLflow experiment ``benchmarks``).
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

import pytorch_lightning as pl
import torch

from benchmarks.common import machine, save, split_train_args

VARIANTS = (
    "eager",
    "compiled",
    "compiled-1thread",
    "compiled-cpp",
    "compiled-optimizer",
    "compiled-autotune",
)
WARMUP = 20  # iterations before the timing starts: they hold the compile
BLOCK = 40  # --inside_pipeline: Lightning batches, then as many bare iterations
PARTS = ("data", "forward", "loss", "backward", "clip", "optimizer")


def endless_batches(data):
    """Training batches across epochs, as the pipeline draws them: the loader holds one
    epoch (``batches_per_epoch``), so a run longer than that starts the next."""
    while True:
        yield from data.train_dataloader()


class InterleavedTimer(pl.Callback):
    """Times Lightning's batches and, after every ``block`` of them, bare iterations of the
    same batches."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.lightning: list[float] = []
        self.bare: list[float] = []
        self.between: list[float] = []
        self._pending: list = []
        self._started = 0.0
        self._ended: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._started = time.perf_counter()
        if self._ended is not None:
            self.between.append(self._started - self._ended)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.lightning.append(time.perf_counter() - self._started)
        self._pending.append(batch)
        if len(self._pending) == self.block:
            self._run_bare(module, trainer.optimizers[0])
            self._pending = []
        self._ended = time.perf_counter()

    def _run_bare(self, module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        from models.metrics import masked_bce_loss

        for inputs, targets, mask in self._pending:
            started = time.perf_counter()
            loss = masked_bce_loss(module.model(inputs), targets, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            module.configure_gradient_clipping(optimizer)
            optimizer.step()
            self.bare.append(time.perf_counter() - started)


def summarize(timer: InterleavedTimer) -> dict:
    """Medians and means in ms; the first block (the compile) is left out of Lightning's."""
    block = timer.block
    lightning, bare = timer.lightning[block:], timer.bare
    if not lightning or not bare:
        raise SystemExit(
            f"ntm_iteration: {len(timer.lightning)} Lightning batches gave no timed pair of "
            f"blocks of {block}; raise --iterations or lower --block"
        )

    def stats(values: list[float]) -> dict:
        return {
            "n": len(values),
            "median_ms": 1000 * statistics.median(values),
            "mean_ms": 1000 * statistics.fmean(values),
        }

    result = {"lightning": stats(lightning), "bare": stats(bare)}
    if timer.between:
        result["between"] = stats(timer.between[block:] or timer.between)
    result["ratio_median"] = result["lightning"]["median_ms"] / result["bare"]["median_ms"]
    result["ratio_mean"] = result["lightning"]["mean_ms"] / result["bare"]["mean_ms"]
    return result


def measure_inside_pipeline(variant: str, iterations: int, block: int, extra: list[str]) -> dict:
    """Runs in the child process: one train run of ``block + iterations`` batches, timed by
    :class:`InterleavedTimer`."""
    from pipelines.common.config import parse_config
    from pipelines.sequence.config import TrainConfig
    from pipelines.sequence.fit import train

    compiled = str(variant == "compiled").lower()
    train_argv = ["--model", "ntm", "--compile", compiled, "--max_steps", str(block + iterations)]
    train_argv += ["--max_minutes", "60", "--experiment_name", "benchmarks", *extra]
    timer = InterleavedTimer(block)
    train(parse_config(TrainConfig, train_argv), callbacks=[timer])
    return {"variant": variant, "threads": torch.get_num_threads(), **summarize(timer)}


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
    block: int | None = None,
    extra: list[str] | None = None,
) -> dict:
    """:func:`measure` of ``variant`` in a fresh process (its own compile and thread count), or
    with ``block`` :func:`measure_inside_pipeline` (``extra``: train arguments)."""
    command = [sys.executable, "-m", "benchmarks.ntm_iteration", "--child", variant]
    command += ["--iterations", str(iterations), "--warmup", str(warmup), "--seed", str(seed)]
    if block is not None:
        command += ["--inside_pipeline", "--block", str(block), "--", *(extra or [])]
    environment = None if env is None else {**os.environ, **env}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    argv, extra = split_train_args(argv)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--inside_pipeline", action="store_true", help="time inside a train run (see above)"
    )
    parser.add_argument("--block", type=int, default=BLOCK, help="with --inside_pipeline")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside_pipeline and not args.child:
        if not set(args.variants) <= {"eager", "compiled"}:
            parser.error("--inside_pipeline times the eager and compiled variants only")
        if args.block < 1:
            parser.error("--block must be at least 1")
    if args.child:
        if args.inside_pipeline:
            result = measure_inside_pipeline(args.child, args.iterations, args.block, extra)
        else:
            result = measure(args.child, args.iterations, args.warmup, args.seed)
        print(json.dumps(result))
        return
    if args.inside_pipeline:
        _report_inside_pipeline(args, extra)
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


def _report_inside_pipeline(args: argparse.Namespace, extra: list[str]) -> None:
    results = []
    for variant in args.variants:
        result = run_child(variant, args.iterations, block=args.block, extra=extra)
        light, bare = result["lightning"], result["bare"]
        print(
            f"{variant}: a Lightning batch {light['median_ms']:.2f} ms median, "
            f"{light['mean_ms']:.2f} mean (n={light['n']}); the bare iteration "
            f"{bare['median_ms']:.2f} / {bare['mean_ms']:.2f} (n={bare['n']}); Lightning / bare "
            f"{result['ratio_median']:.3f} (medians), {result['ratio_mean']:.3f} (means)",
            flush=True,
        )
        if "between" in result:
            between = result["between"]
            print(
                f"{variant}: between two Lightning batches (data loader, loop, validations) "
                f"{between['median_ms']:.2f} ms median, {between['mean_ms']:.2f} mean"
            )
        results.append(result)
    print(f"machine: {machine()}")
    save("ntm_iteration_inside_pipeline", {"argv": sys.argv[1:], "results": results})


if __name__ == "__main__":
    main()
