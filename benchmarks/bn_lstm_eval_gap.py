"""How far the BN-LSTM over time (rows view) is from itself between eval mode (running or,
with ``--population_batches``, population statistics) and batch statistics, and where the
per-step statistics disagree.

    python -m benchmarks.bn_lstm_eval_gap --eps 1e-5
    python -m benchmarks.bn_lstm_eval_gap --population_batches 50 --eps 1e-2

Trains ``RecurrentBNLSTM(28, 64)`` for 2 epochs on 3,000 images (batch 64, Adam 3e-3, seed 0),
then scores 1,000 validation images both ways and prints, per normalizer and time step, the
largest gap between a validation batch's own mean and the running mean (in units of the
batch's standard deviation) and the range of the variance ratio batch/running.
"""

from __future__ import annotations

import argparse
import itertools

import pytorch_lightning as pl
import torch

from benchmarks.common import machine
from datamodules.mnist import MNISTDataModule
from models.batch_norm import estimate_population_statistics
from models.classifier_module import ClassifierModule
from models.unfolded_lstm import RecurrentBNLSTM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eps", type=float, default=1e-5)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument(
        "--population_batches",
        type=int,
        default=0,
        help="re-estimate the statistics over this many training batches first",
    )
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)
    data = MNISTDataModule("rows", data_dir=args.data_dir, batch_size=64, train_subset=3000)
    core = RecurrentBNLSTM(28, 64, steps=28, eps=args.eps)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)  # fmt: skip
    trainer.fit(ClassifierModule(core, lr=3e-3), datamodule=data)

    if args.population_batches:
        train_inputs = (
            x for x, _ in itertools.islice(iter(data.train_dataloader()), args.population_batches)
        )
        estimate_population_statistics(core, train_inputs)
    x, y = next(iter(data.val_dataloader()))
    x, y = x[:1000], y[:1000]
    seen: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def record(norm, step):
        def hook(module, inputs):
            if inputs[1] == step:
                seen.setdefault((id(module), step), (inputs[0].mean(0), inputs[0].var(0)))

        return norm.register_forward_pre_hook(hook)

    with torch.no_grad():
        core.eval()
        eval_acc = float((core(x).argmax(1) == y).float().mean())
        saved = {name: buffer.clone() for name, buffer in core.named_buffers()}
        steps = (0, 1, 2, 5, 10, 20, 27)
        norms = {"x": core.norm_x, "h": core.norm_h, "c": core.norm_c}
        hooks = [record(norm, step) for norm in norms.values() for step in steps]
        core.train()
        batch_acc = float((core(x).argmax(1) == y).float().mean())
        for hook in hooks:
            hook.remove()
        for name, buffer in core.named_buffers():
            buffer.copy_(saved[name])
    print(f"machine: {machine()}")
    print(
        f"population statistics from {args.population_batches} training batches"
        if args.population_batches
        else "running statistics from training"
    )
    print(f"eps {args.eps:g}: eval-mode accuracy {100 * eval_acc:.1f} %, "
          f"batch-statistics accuracy {100 * batch_acc:.1f} %")  # fmt: skip
    print("| normalizer | step | max mean gap (batch stds) | var ratio min | var ratio max |")
    print("|---|---|---|---|---|")
    for name, norm in norms.items():
        for step in steps:
            mean, var = seen[(id(norm), step)]
            gap = ((mean - norm.running_mean[step]).abs() / (var.sqrt() + 1e-6)).max()
            ratio = var / norm.running_var[step]
            print(f"| {name} | {step} | {float(gap):.3g} | {float(ratio.min()):.3g} | "
                  f"{float(ratio.max()):.3g} |")  # fmt: skip


if __name__ == "__main__":
    main()
