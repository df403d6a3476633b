"""Where the unfolded BN-LSTM's first/last gradient ratio comes from: a short-training probe.

    python -m benchmarks.unfolded_gradient_probe --depth 30 --steps 300 \
        --variants base gamma_h=0.02 gamma_h=0.02,input_init_gain=2

Each variant is ``name`` or ``key=value[,key=value]`` over the settings of
:class:`models.unfolded_lstm.UnfoldedLSTM` that the depth study asks about (``gamma_x``,
``gamma_h``, ``gamma_c``: the starting gamma of the input, hidden and cell normalizers;
``input_init_gain``: the gain of the first matrix's Xavier init; ``norm_cell``: normalize the
cell state or not). Every variant trains the same seeded network on the same MNIST batches (Adam
1e-3, clip 1, batch 128, the classify pipeline's settings) for ``--steps`` steps and logs the
gradient norm of every cell's weight matrix every ``--every`` steps. Reported: the first/last
ratio at step 0, its median per quarter of the probe and over the second half, plain and per
weight (each norm divided by sqrt(#weights)); the second half's layer 1/2 and 2/last ratios,
which split the input layer's share from the growth through depth; the mean row norms of the
matrices at the end; and the training loss at the end. The probe does not measure
accuracy: candidates are then trained in full with ``pipelines.classify``.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from benchmarks.common import machine, save
from datamodules.mnist import TRAIN_SIZE, load_split, make_view, resolve_data_dir
from models.classifier_module import layer_gradient_norms
from models.unfolded_lstm import UnfoldedLSTM
from pipelines.diagnostics import gradient_ratio_summary


def parse_variant(text: str) -> tuple[str, dict[str, float]]:
    if text == "base":
        return text, {}
    settings = {}
    for item in text.split(","):
        key, value = item.split("=")
        settings[key] = float(value)
    return text, settings


def probe(settings: dict[str, float], images, labels, args) -> dict:
    torch.manual_seed(args.seed)
    options = dict(settings)
    if "norm_cell" in options:
        options["norm_cell"] = bool(options["norm_cell"])
    model = UnfoldedLSTM(784, args.hidden_size, args.depth, **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(images), generator=generator)
    weights = model.layer_weights()
    sizes = [weights[0].numel(), weights[-1].numel()]
    history, losses = [], []  # (step, gradient norm per layer)
    for step in range(args.steps):
        index = order[(step * 128) % len(order) :][:128]
        x, y = make_view(images[index], "flat"), labels[index]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if step % args.every == 0:
            history.append((step, layer_gradient_norms(model)))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    late = [(step, norms) for step, norms in history if step >= args.steps // 2]
    summary = gradient_ratio_summary(late, sizes)
    quarter = args.steps / 4
    row_norms = [w.detach().norm(dim=1).mean().item() for w in weights]
    return {
        "ratio_at_init": history[0][1][0] / history[0][1][-1],
        "ratio_median_by_quarter": [
            statistics.median(
                n[0] / n[-1] for step, n in history if q * quarter <= step < (q + 1) * quarter
            )
            for q in range(4)
        ],
        "ratio_median_late": summary["grad_norm_ratio_first_last_median"],
        "rms_ratio_median_late": summary["grad_rms_ratio_first_last_median"],
        "first_to_second_median_late": statistics.median(n[0] / n[1] for _, n in late),
        "second_to_last_median_late": statistics.median(n[1] / n[-1] for _, n in late),
        "mean_row_norm_first_second_last": [row_norms[0], row_norms[1], row_norms[-1]],
        "loss_end": statistics.mean(losses[-20:]),
    }


def report(name: str, result: dict) -> None:
    quarters = " / ".join(f"{r:.1f}" for r in result["ratio_median_by_quarter"])
    norms = ", ".join(f"{n:.2f}" for n in result["mean_row_norm_first_second_last"])
    print(
        f"| {name} | {result['ratio_at_init']:.2f} | {quarters} | "
        f"{result['ratio_median_late']:.2f} | {result['rms_ratio_median_late']:.2f} | "
        f"{result['first_to_second_median_late']:.2f} | "
        f"{result['second_to_last_median_late']:.2f} | {norms} | {result['loss_end']:.3f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--hidden_size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    images, labels = load_split(resolve_data_dir(args.data_dir), train=True, download=False)
    images, labels = images[:TRAIN_SIZE], labels[:TRAIN_SIZE]
    print(machine())
    print("| variant | ratio at init | median ratio by quarter | median ratio, 2nd half | "
          "per-weight RMS | layer 1/2 | layer 2/last | mean row norm 1, 2, last | "
          "loss, last 20 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for text in args.variants:
        name, settings = parse_variant(text)
        result = {"variant": name, **probe(settings, images, labels, args)}
        results.append(result)
        report(name, result)
    save(f"unfolded_gradient_probe_depth{args.depth}", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
