"""First-to-last-layer gradient ratios of finished classify runs, from their MLflow history.

    python -m benchmarks.gradient_ratios --run_ids d15d1137... aba1542b...

Recomputes, for runs logged before ``classify`` reported them itself, what
``pipelines.diagnostics.gradient_ratio_summary`` now logs: the final-step ratio, its median over
training, and the median per-weight RMS ratio (weight counts from the rebuilt model).
"""

from __future__ import annotations

import argparse

from mlflow.tracking import MlflowClient

from benchmarks.common import save
from pipelines.classify import ClassifyConfig, make_classifier
from pipelines.config import parse_config
from pipelines.diagnostics import gradient_ratio_summary
from pipelines.tracking.store import tracking_uri


def ratios(client: MlflowClient, run_id: str) -> dict:
    logged = client.get_run(run_id).data.params
    # runs logged before the "resolved." keys used the bare names
    params = {key: logged.get(f"resolved.{key}", logged.get(key)) for key in
              ("model", "depth", "hidden_size", "batch_norm")}  # fmt: skip
    config = parse_config(ClassifyConfig, [
        "--model", params["model"], "--depth", params["depth"],
        "--hidden_size", params["hidden_size"], "--batch_norm", params["batch_norm"],
    ])  # fmt: skip
    weights = make_classifier(config, (784, 1)).layer_weights()
    last = len(weights)
    histories = [client.get_metric_history(run_id, f"grad_norm/layer_{i}") for i in (1, last)]
    steps = sorted({m.step for m in histories[0]} & {m.step for m in histories[1]})
    by_step = [{m.step: m.value for m in history} for history in histories]
    history = [(step, [by_step[0][step], by_step[1][step]]) for step in steps]
    sizes = [weights[0].numel(), weights[-1].numel()]
    return {"run_id": run_id, "model": params["model"], "depth": params["depth"],
            "batch_norm": params["batch_norm"], "points": len(history),
            **gradient_ratio_summary(history, sizes)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run_ids", nargs="+", required=True)
    args = parser.parse_args()
    client = MlflowClient(tracking_uri())
    results = [ratios(client, run_id) for run_id in args.run_ids]
    print("| run | model | depth | BN | points | final | median | per-weight RMS median |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['run_id'][:8]} | {r['model']} | {r['depth']} | {r['batch_norm']} | "
              f"{r['points']} | {r['grad_norm_ratio_first_last']:.2f} | "
              f"{r['grad_norm_ratio_first_last_median']:.2f} | "
              f"{r['grad_rms_ratio_first_last_median']:.2f} |")  # fmt: skip
    save("gradient_ratios", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
