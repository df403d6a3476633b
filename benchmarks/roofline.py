"""This machine's roofline, and where the NTM training step sits on it.

    python -m benchmarks.roofline --seconds 2 --iterations 100

Ceilings, measured here with the process's intra-op threads:

- **compute**: float32 GEMM (``torch.mm`` of two ``--gemm_size`` square matrices, MKL), the
  FMA peak the step's matmuls could reach;
- **bandwidth**: a streaming ``c = a + b`` over three float32 arrays whose total is the working
  set: ``--l2_bytes`` (fits this machine's 2 MiB L2 per core), ``--l3_bytes`` (beyond L2) and
  ``--dram_bytes`` (beyond any cache). Bytes counted: two reads and one write per element.

The step's cost per sequence is counted, not estimated: one forward + loss + backward of the
default copy NTM (the train pipeline's own model and data, batch 64, lengths 1..20) runs under
torch's ``FlopCounterMode`` (matmul FLOPs) and ``TrafficCounter`` below (every other op's
output elements, and the bytes every op reads and writes), averaged over ``--cost_batches``
batches. That traffic is what eager PyTorch moves, op by op with no fusion: an upper bound on a
fused step's. The lower bound is the memory matrix alone, read and written once per time step
forward and once backward. The eager and compiled steps are then timed in the bare loop of
``benchmarks.ntm_iteration`` (a fresh process each) and placed on the roofline: achieved
FLOP/s, and the fraction of the ceiling that binds at the step's arithmetic intensity.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from benchmarks.common import machine, save
from benchmarks.ntm_iteration import endless_batches, run_child

FLOAT_BYTES = 4


def _bytes(tensor: torch.Tensor) -> int:
    """Bytes an op touches in ``tensor``: its elements, but no more than its storage holds (a
    broadcast ``expand`` reads its few real elements, not every repeated one)."""
    stored = tensor.untyped_storage().nbytes()
    return min(tensor.numel() * tensor.element_size(), stored)


class TrafficCounter(TorchDispatchMode):
    """Counts what eager PyTorch does, op by op: the output elements of every op that is not a
    matmul (``element_ops``, one operation per element written) and the bytes every op reads
    and writes (``bytes``). Views move no data and count nothing; an in-place op reads and
    writes its operand."""

    def __init__(self) -> None:
        super().__init__()
        self.element_ops = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        schema = func._schema
        if any(r.alias_info is not None for r in schema.returns) and not schema.is_mutable:
            return out  # a view of its input
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.bytes += sum(map(_bytes, inputs)) + sum(map(_bytes, outputs))
        if func.overloadpacket not in flop_registry:
            self.element_ops += sum(t.numel() for t in outputs)
        return out


def count(step, *args) -> dict[str, int]:
    """Matmul FLOPs, element ops and bytes of ``step(*args)``, backward included if it runs one."""
    flops = FlopCounterMode(display=False)
    traffic = TrafficCounter()
    with flops, traffic:
        step(*args)
    return {
        "matmul_flops": flops.get_total_flops(),
        "element_ops": traffic.element_ops,
        "bytes": traffic.bytes,
    }


def step_cost(batches: int, seed: int) -> dict[str, float]:
    """Per sequence, averaged over ``batches`` training batches of the default copy NTM."""
    from models.metrics import masked_bce_loss
    from pipelines.common.config import parse_config
    from pipelines.sequence.build import make_datamodule, make_module, make_task
    from pipelines.sequence.config import TrainConfig

    config = parse_config(TrainConfig, ["--model", "ntm", "--compile", "false"])
    task = make_task(config.data)
    torch.manual_seed(seed)
    model = make_module(config, task).model
    data = make_datamodule(config, task)
    data.setup("fit")
    loader = endless_batches(data)

    def train_step(inputs, targets, mask) -> None:
        model.zero_grad(set_to_none=True)
        masked_bce_loss(model(inputs), targets, mask).backward()

    totals = {"matmul_flops": 0, "element_ops": 0, "bytes": 0}
    sequences = time_steps = 0
    for _ in range(batches):
        inputs, targets, mask = next(loader)
        for key, value in count(train_step, inputs, targets, mask).items():
            totals[key] += value
        sequences += inputs.shape[0]
        time_steps += inputs.shape[0] * inputs.shape[1]
    slots, width = config.model.memory_slots, config.model.memory_width
    per_sequence = {key: value / sequences for key, value in totals.items()}
    # the memory matrix read and written once per time step, forward and backward
    per_sequence["state_bytes"] = 4 * slots * width * FLOAT_BYTES * time_steps / sequences
    per_sequence["time_steps"] = time_steps / sequences
    return per_sequence


def gemm_peak(size: int, seconds: float) -> float:
    """FLOP/s of a float32 square GEMM of ``size``, repeated for ``seconds``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    c = torch.empty(size, size)
    torch.mm(a, b, out=c)
    repeats, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        torch.mm(a, b, out=c)
        repeats += 1
    return 2 * size**3 * repeats / elapsed


def stream_bandwidth(working_set: int, seconds: float) -> float:
    """Bytes/s of ``c = a + b`` with the three float32 arrays ``working_set`` bytes together."""
    elements = max(1, working_set // (3 * FLOAT_BYTES))
    a, b, c = torch.rand(elements), torch.rand(elements), torch.empty(elements)
    torch.add(a, b, out=c)
    repeats, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        torch.add(a, b, out=c)
        repeats += 1
    return 3 * elements * FLOAT_BYTES * repeats / elapsed


def place(seq_per_s: float, cost: dict[str, float], ceilings: dict[str, float]) -> dict:
    """Achieved rates, and the share of the ceiling that binds at each bound on the traffic."""
    work = cost["matmul_flops"] + cost["element_ops"]
    placed = {
        "seq_per_s": seq_per_s,
        "gflop_per_s": work * seq_per_s / 1e9,
        "matmul_gflop_per_s": cost["matmul_flops"] * seq_per_s / 1e9,
        "eager_traffic_gb_per_s": cost["bytes"] * seq_per_s / 1e9,
    }
    for traffic in ("bytes", "state_bytes"):
        intensity = work / cost[traffic]
        for level in ("l2", "l3", "dram"):
            bound = min(ceilings["gemm_flop_per_s"], intensity * ceilings[f"{level}_bytes_per_s"])
            placed[f"share_of_{level}_roof_at_{traffic}"] = work * seq_per_s / bound
    return placed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per ceiling")
    parser.add_argument("--gemm_size", type=int, default=1024)
    parser.add_argument("--l2_bytes", type=int, default=1 << 20)
    parser.add_argument("--l3_bytes", type=int, default=64 << 20)
    parser.add_argument("--dram_bytes", type=int, default=1 << 30)
    parser.add_argument("--cost_batches", type=int, default=10)
    parser.add_argument("--variants", nargs="*", default=["eager", "compiled"])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ceilings = {"gemm_flop_per_s": gemm_peak(args.gemm_size, args.seconds)}
    for level in ("l2", "l3", "dram"):
        working_set = getattr(args, f"{level}_bytes")
        ceilings[f"{level}_bytes_per_s"] = stream_bandwidth(working_set, args.seconds)
    cost = step_cost(args.cost_batches, args.seed)
    steps = [run_child(v, args.iterations, args.warmup, args.seed) for v in args.variants]
    placed = {s["variant"]: place(s["seq_per_s"], cost, ceilings) for s in steps}

    work = cost["matmul_flops"] + cost["element_ops"]
    print(f"machine: {machine()}")
    print(
        f"ceilings: GEMM {ceilings['gemm_flop_per_s'] / 1e9:.1f} GFLOP/s; stream "
        + ", ".join(
            f"{level} {ceilings[f'{level}_bytes_per_s'] / 1e9:.1f} GB/s"
            for level in ("l2", "l3", "dram")
        )
    )
    print(
        f"per sequence ({cost['time_steps']:.1f} time steps): {cost['matmul_flops'] / 1e6:.2f} M "
        f"matmul FLOPs + {cost['element_ops'] / 1e6:.2f} M element ops; eager traffic "
        f"{cost['bytes'] / 1e6:.1f} MB (intensity {work / cost['bytes']:.3f} FLOP/B), memory "
        f"matrix alone {cost['state_bytes'] / 1e6:.2f} MB ({work / cost['state_bytes']:.2f} FLOP/B)"
    )
    print(
        "| step | seq/s | GFLOP/s | eager-traffic GB/s | share of roof (eager traffic: L2 / L3 "
        "/ DRAM) | share of roof (memory matrix only: L2 / L3 / DRAM) |"
    )
    print("|---|---|---|---|---|---|")
    for variant, p in placed.items():
        shares = [
            " / ".join(
                f"{100 * p[f'share_of_{lv}_roof_at_{t}']:.0f} %" for lv in ("l2", "l3", "dram")
            )
            for t in ("bytes", "state_bytes")
        ]
        print(
            f"| {variant} | {p['seq_per_s']:.0f} | {p['gflop_per_s']:.2f} | "
            f"{p['eager_traffic_gb_per_s']:.1f} | {shares[0]} | {shares[1]} |"
        )
    save(
        "roofline",
        {
            "argv": sys.argv[1:],
            "ceilings": ceilings,
            "cost": cost,
            "steps": steps,
            "placed": placed,
        },
    )


if __name__ == "__main__":
    main()
