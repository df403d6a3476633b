"""Where does a trained NTM fail at associative recall? Errors by item count and query position.

    python -m benchmarks.assoc_recall_errors --checkpoints .ntmlab/runs/<run>/checkpoints/best.ckpt

Scores each checkpoint on the pipeline's seeded test sets (``make_test_set``, so the figures
match ``pipelines.evaluate``) at every item count of ``--items``, and at the largest count
splits the error by the query's position in the episode. Errors spread evenly over positions
point at the lookup (content addressing confusing similar items); errors that grow with the
position point at the write addressing drifting over a long episode (positions past the
training range of 2..6 items are never written in training). It also prints how focused each
head is (``head_sharpness``), which tells a model that writes sharply but never learned the
lookup from one that cannot write.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import machine, save
from datamodules.synthetic import AssociativeRecallTask, SequenceBatch, make_test_set
from models.metrics import scored_bits_per_sequence, wrong_bits_per_sequence
from pipelines.evaluate import EvaluateConfig
from pipelines.tracking.models import load_from_checkpoint

# pipelines.evaluate's batches, so the same episodes
EVAL_BATCH_SIZE = EvaluateConfig().eval_batch_size


def query_positions(task: AssociativeRecallTask, batch: SequenceBatch, items: int) -> torch.Tensor:
    """Index ``[B]`` of the item each episode's query copies (the first match if repeated)."""
    stride, size, bits = task.item_size + 1, task.item_size, task.bits
    inputs = batch.inputs
    episode = inputs[:, : stride * items].reshape(inputs.shape[0], items, stride, -1)
    stored = episode[:, :, 1:, :bits]  # [B,K,size,bits]
    start = stride * items
    query = inputs[:, start + 1 : start + 1 + size, :bits]  # [B,size,bits]
    matches = (stored == query[:, None]).flatten(2).all(dim=-1)  # [B,K]
    return matches.float().argmax(dim=1)


@torch.no_grad()
def errors(
    core: torch.nn.Module, task: AssociativeRecallTask, items: int, size: int, seed: int
) -> dict:
    """Wrong bits per episode and the query position of each, over the seeded test set."""
    core.eval()
    torch.manual_seed(seed)  # a random starting memory draws as in pipelines.evaluate
    wrong, positions = [], []
    for batch in make_test_set(task, items, size, EVAL_BATCH_SIZE, seed):
        wrong.append(wrong_bits_per_sequence(core(batch.inputs), batch.targets, batch.mask))
        positions.append(query_positions(task, batch, items))
    wrong_bits, where = torch.cat(wrong).double(), torch.cat(positions)
    scored = int(scored_bits_per_sequence(batch.targets, batch.mask)[0])  # the same every episode
    by_position = {
        int(p): 1.0 - float(wrong_bits[where == p].mean()) / scored for p in where.unique()
    }
    return {
        "items": items,
        "bit_acc": 1.0 - float(wrong_bits.mean()) / scored,
        "bits_per_seq": float(wrong_bits.mean()),
        "perfect_episodes": float((wrong_bits == 0).double().mean()),
        "bit_acc_by_query_position": by_position,
    }


@torch.no_grad()
def head_sharpness(core: torch.nn.Module, task: AssociativeRecallTask, items: int, seed: int):
    """Mean largest weight of each write head while the items are written, and of each read
    head from the query on: near 1 is a head focused on one slot, near 1/N a blurred one."""
    core.eval()
    torch.manual_seed(seed)
    batch = next(iter(make_test_set(task, items, EVAL_BATCH_SIZE, EVAL_BATCH_SIZE, seed)))
    _, trace = core(batch.inputs, return_trace=True)
    written = (task.item_size + 1) * items  # the steps before the query
    write = trace.write_weights[:, :written].amax(dim=-1).mean(dim=(0, 1))
    read = trace.read_weights[:, written:].amax(dim=-1).mean(dim=(0, 1))
    return write.tolist(), read.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--items", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12])
    parser.add_argument("--test_size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="test-set seed (evaluate's default)")
    parser.add_argument("--sharpness_items", type=int, default=6, help="items for head focus")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    results = []
    for path in args.checkpoints:
        model = load_from_checkpoint(path)
        if not isinstance(model.task, AssociativeRecallTask):
            raise SystemExit(f"{path}: trained on {model.task.name}, not associative_recall")
        rows = [
            errors(model.core, model.task, items, args.test_size, args.seed) for items in args.items
        ]
        results.append({"checkpoint": path, "rows": rows})
        print(f"\n{path}")
        print("| items | bit acc % | bits/seq | perfect episodes % |")
        print("|---|---|---|---|")
        for row in rows:
            print(f"| {row['items']} | {100 * row['bit_acc']:.2f} | {row['bits_per_seq']:.3f} | "
                  f"{100 * row['perfect_episodes']:.1f} |")  # fmt: skip
        last = rows[-1]
        cells = " ".join(
            f"{position + 1}:{100 * acc:.1f}"
            for position, acc in sorted(last["bit_acc_by_query_position"].items())
        )
        print(f"bit acc % by query position (1-based) at {last['items']} items: {cells}")
        write, read = head_sharpness(model.core, model.task, args.sharpness_items, args.seed)
        results[-1]["head_sharpness"] = {"write": write, "read": read}
        print(f"mean largest weight at {args.sharpness_items} items, write heads while writing: "
              f"{' '.join(f'{w:.2f}' for w in write)}; read heads from the query on: "
              f"{' '.join(f'{r:.2f}' for r in read)}")  # fmt: skip
    save("assoc_recall_errors", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
