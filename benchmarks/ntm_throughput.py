"""Training throughput (sequences/s) of a model on copy, lengths 1..20, default batch size.

    python -m benchmarks.ntm_throughput --model ntm --seconds 60 [-- any train option]

Runs the real training step (SequenceModule with its optimizer and clipping) through a
Lightning Trainer without logging, warms up, then times a fixed wall-clock window.
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl

from benchmarks.common import machine, save
from pipelines.config import parse_config
from pipelines.factory import make_datamodule, make_module, make_task
from pipelines.train_config import TrainConfig


class _Timer(pl.Callback):
    def __init__(self, warmup: int, seconds: float) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.start: float | None = None
        self.sequences = 0
        self.elapsed = 0.0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
            return
        if self.start is not None:
            self.sequences += batch.inputs.shape[0]
            self.elapsed = time.perf_counter() - self.start
            if self.elapsed >= self.seconds:
                trainer.should_stop = True


def measure(argv: list[str], seconds: float, warmup: int = 20) -> dict:
    config = parse_config(TrainConfig, argv)
    pl.seed_everything(config.seed, verbose=False)
    task = make_task(config.data)
    data = make_datamodule(config, task)
    module = make_module(config, task)
    timer = _Timer(warmup, seconds)
    trainer = pl.Trainer(
        max_steps=10**9, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    return {
        "args": argv,
        "batch_size": config.data.batch_size,
        "sequences": timer.sequences,
        "seconds": timer.elapsed,
        "seq_per_s": timer.sequences / timer.elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ntm")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch_size", type=int, default=None, help="default: the config's")
    args, extra = parser.parse_known_args()
    argv = ["--model", args.model, *[arg for arg in extra if arg != "--"]]
    if args.batch_size:
        argv += ["--batch_size", str(args.batch_size)]
    result = measure(argv, args.seconds)
    print(f"machine: {machine()}")
    print(
        f"{' '.join(argv)}: {result['seq_per_s']:.0f} sequences/s at batch {result['batch_size']} "
        f"({result['sequences']} sequences in {result['seconds']:.1f} s)"
    )
    save(f"throughput_{args.model}", result)


if __name__ == "__main__":
    main()
