"""MLflow logging overhead of NTM copy training at default settings.

    python -m benchmarks.logging_overhead --steps 1000 --repeats 2

Times the same fit (same seed, data, validation every 200 steps, checkpoints) three ways:
``off``: no logger, no figures, checkpoints local only; ``sqlite``: the full train pipeline
against a local sqlite store; ``server``: the full pipeline against an ``mlflow server``
subprocess on loopback. The modes are interleaved per repeat, so drift of the machine hits all
of them alike. Two measures: A/B = median fit time / median ``off`` fit time - 1 (noisy on a
shared 2-core machine: a few % between identical runs), and direct = wall-clock spent inside
the logging calls (outbox sends, figure rendering and saving) / fit time, per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from benchmarks.common import machine, save
from pipelines.config import parse_config
from pipelines.factory import make_datamodule, make_module, make_task
from pipelines.train import MONITOR, MONITOR_MODE, build_trainer, train, train_seconds
from pipelines.train_config import TrainConfig
from tests.conftest import MlflowServer


def fit_without_logging(config: TrainConfig, workdir: Path) -> float:
    task = make_task(config.data)
    datamodule = make_datamodule(config, task)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = make_module(config, task)
    checkpoint = ModelCheckpoint(
        dirpath=workdir, filename="best", monitor=MONITOR, mode=MONITOR_MODE, save_last=True
    )
    trainer = build_trainer(config, False, [checkpoint], workdir)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return train_seconds(trainer, time.perf_counter() - started)  # measured as train() does


def fit_with_pipeline(config: TrainConfig, uri: str) -> tuple[float, float]:
    """Fit seconds, and the seconds of it spent inside logging calls (the direct measure)."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    result = train(config)
    return result.seconds, result.metrics["logging_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["off", "sqlite", "server"])
    args = parser.parse_args()
    argv = ["--model", "ntm", "--max_steps", str(args.steps), "--test_lengths", "20"]
    times: dict[str, list[float]] = {mode: [] for mode in args.modes}
    inside_logging: dict[str, list[float]] = {mode: [] for mode in args.modes if mode != "off"}
    with tempfile.TemporaryDirectory(prefix="ntmlab-bench-") as tmp:
        root = Path(tmp)
        os.environ["NTMLAB_HOME"] = str(root / "home")
        server = None
        if "server" in args.modes:
            (root / "server").mkdir()
            server = MlflowServer(root / "server")
            server.start()
        try:
            for repeat in range(args.repeats):
                for mode in args.modes:
                    config = parse_config(TrainConfig, argv)
                    logging = None
                    if mode == "off":
                        seconds = fit_without_logging(config, root / f"off-{repeat}")
                    else:
                        uri = f"sqlite:///{root / 'mlflow.db'}" if mode == "sqlite" else server.url
                        seconds, logging = fit_with_pipeline(config, uri)
                        inside_logging[mode].append(logging / seconds)
                    times[mode].append(seconds)
                    share = f", {logging / seconds:.2%} inside logging" if logging else ""
                    print(f"repeat {repeat} {mode}: {seconds:.1f} s{share}", flush=True)
        finally:
            if server is not None:
                server.stop()
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    result = {
        "steps": args.steps,
        "times_s": times,
        "median_s": medians,
        "share_inside_logging": inside_logging,
    }
    if "off" in medians:
        result["overhead"] = {
            mode: medians[mode] / medians["off"] - 1 for mode in medians if mode != "off"
        }
    print(machine())
    for mode, value in medians.items():
        extra = ""
        if mode != "off":
            direct = statistics.median(inside_logging[mode])
            extra = f"  time inside logging calls {direct:.2%}"
            if "overhead" in result:
                extra += f"  A/B vs off {result['overhead'][mode]:+.1%}"
        print(f"{mode:7s} median fit {value:.1f} s{extra}")
    print(f"saved {save('logging_overhead', result)}")


if __name__ == "__main__":
    main()
