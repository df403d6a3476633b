"""Does a resumed run end where an uninterrupted one does? NTM copy, default settings.

    python -m benchmarks.resume_fidelity --steps 1000 --interrupt_after 2 --signal KILL

Trains once uninterrupted (subprocess), then again in a subprocess that gets the signal once
``interrupt_after`` validations are logged (SIGKILL: no chance to clean up; SIGTERM: orderly
stop mid-epoch), resumes it with ``--resume_run_id`` and compares the final validation metric.
Target (issue 7): equal within 5 % relative.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmarks.common import machine, save

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _final(client: MlflowClient, run_id: str) -> dict[str, float]:
    history = client.get_metric_history(run_id, "val_bits_per_seq")
    last = max(history, key=lambda m: m.step)
    run = client.get_run(run_id)
    return {
        "final_val_bits_per_seq": last.value,
        "final_step": last.step,
        "best_val_bits_per_seq": run.data.metrics["best_val_bits_per_seq"],
        "status": run.info.status,
        "val_steps": sorted(m.step for m in history),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--interrupt_after", type=int, default=2, help="validations logged")
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train_args = ["--max_steps", str(args.steps), "--test_lengths", "20", "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory(prefix="ntmlab-resume-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "NTMLAB_HOME": str(Path(tmp) / "home")}
        env.pop("MLFLOW_RUN_ID", None)
        client = MlflowClient(uri)

        if _run([*train_args, "--experiment_name", "reference"], env).wait() != 0:
            raise SystemExit("reference run failed")
        (reference_run,) = client.search_runs(
            [client.get_experiment_by_name("reference").experiment_id]
        )
        reference = _final(client, reference_run.info.run_id)

        process = _run([*train_args, "--experiment_name", "interrupted"], env)
        run_id = None
        while True:
            if process.poll() is not None:
                raise SystemExit("the run ended before it could be interrupted")
            experiment = client.get_experiment_by_name("interrupted")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs:
                run_id = runs[0].info.run_id
                logged = client.get_metric_history(run_id, "val_bits_per_seq")
                if len(logged) >= args.interrupt_after:
                    break
            time.sleep(0.5)
        time.sleep(3)  # mid-epoch
        process.send_signal(getattr(signal, f"SIG{args.signal}"))
        interrupted_rc = process.wait()
        status_after_interrupt = client.get_run(run_id).info.status
        started = time.perf_counter()
        resumed_rc = _run(["--resume_run_id", run_id], env).wait()
        resume_seconds = time.perf_counter() - started
        resumed = _final(client, run_id)

    relative = abs(resumed["final_val_bits_per_seq"] - reference["final_val_bits_per_seq"]) / max(
        abs(reference["final_val_bits_per_seq"]), 1e-12
    )
    result = {
        "args": vars(args),
        "reference": reference,
        "resumed": resumed,
        "interrupted_exit_code": interrupted_rc,
        "status_after_interrupt": status_after_interrupt,
        "resumed_exit_code": resumed_rc,
        "resume_seconds": resume_seconds,
        "relative_difference_final_val": relative,
    }
    print(machine())
    print(
        f"SIG{args.signal} after {args.interrupt_after} validations: run was "
        f"{status_after_interrupt} (exit {interrupted_rc}); resumed exit {resumed_rc}, "
        f"{resumed['status']}, val steps continuous: "
        f"{resumed['val_steps'] == reference['val_steps']}"
    )
    print(
        f"final val_bits_per_seq: reference {reference['final_val_bits_per_seq']:.4f}, "
        f"resumed {resumed['final_val_bits_per_seq']:.4f} (relative difference {relative:.2e})"
    )
    print(f"saved {save(f'resume_fidelity_{args.signal.lower()}', result)}")


if __name__ == "__main__":
    main()
