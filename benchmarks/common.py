"""Shared helpers for benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "out"


def machine() -> str:
    """One line naming the machine a figure was measured on."""
    cpu = platform.processor() or "unknown cpu"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {device}"
    )


def split_train_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """``(the script's own arguments, the train arguments after --)`` of ``argv`` (or of the
    command line)."""
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        return list(argv), []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save(name: str, payload: dict) -> Path:
    """Write ``benchmarks/out/<name>.json`` (ignored by git; docs/results.md holds the record), or
    into ``$NTMLAB_BENCHMARK_OUT`` (the tests, which must not replace a real result)."""
    out = Path(os.environ.get("NTMLAB_BENCHMARK_OUT") or OUT)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    payload = {"machine": machine(), "commit": git_commit(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    return path
