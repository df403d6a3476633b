"""Test accuracy and seconds per epoch of the MNIST classifiers through the classify pipeline.

    python -m benchmarks.mnist_models --epochs 3 --runs unfolded_lstm:flat:10 lstm:rows bn_lstm:rows
    python -m benchmarks.mnist_models --epochs 10 --runs unfolded_lstm:flat:30 mlp:flat:30 \\
        -- --batch_norm false

Each ``model:view[:depth]`` trains on the 55,000-image split for ``--epochs`` epochs and is
tested on the official 10,000 test images; MLflow experiment ``benchmarks-mnist``.
"""

from __future__ import annotations

import argparse

from benchmarks.common import machine, save
from pipelines.common.config import parse_config
from pipelines.mnist.fit import ClassifyConfig, classify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", nargs="+", default=["unfolded_lstm:flat:10"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="classify options after --")
    args = parser.parse_args()
    results = []
    for spec in args.runs:
        model, view, *depth = spec.split(":")
        argv = [
            "--model",
            model,
            "--view",
            view,
            "--epochs",
            str(args.epochs),
            "--progress_bar",
            "false",
            "--experiment_name",
            "benchmarks-mnist",
            *args.extra,
        ]
        if depth:
            argv += ["--depth", depth[0]]
        result = classify(parse_config(ClassifyConfig, argv))
        results.append({"spec": spec, "argv": argv, "run_id": result.run_id, **result.metrics})
    print(f"machine: {machine()}")
    print(
        "| model:view[:depth] | epochs | test acc % | s/epoch | grad ratio first/last: "
        "final | median | median, last tenth | per-weight RMS median |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ratios = " | ".join(
            "" if r.get(key) is None else f"{r[key]:.2f}"
            for key in (
                "grad_norm_ratio_first_last",
                "grad_norm_ratio_first_last_median",
                "grad_norm_ratio_first_last_end_median",
                "grad_rms_ratio_first_last_median",
            )
        )
        print(
            f"| {r['spec']} | {r['epochs_trained']:.2f} | {100 * r['test_acc']:.2f} | "
            f"{r['seconds_per_epoch']:.0f} | {ratios} |"
        )
    save("mnist_models", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
