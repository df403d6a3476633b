"""A data-parallel worker process: one fit of the train or classify pipeline, in lockstep with
rank 0, described by rank 0 in ``$NTMLAB_DDP_WORKER`` (:func:`pipelines.scaling.worker_processes`).

Not a user command: rank 0 starts it with ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. The worker tracks nothing; it exits 0 when the fit ends or rank 0 stops
it with a signal, and non-zero on a crash (rank 0 then fails at its next all-reduce).
"""

from __future__ import annotations

import json
import os
import sys

from pipelines.scaling import WORKER_SPEC_ENV


def main() -> int:
    spec = json.loads(os.environ[WORKER_SPEC_ENV])
    if spec["pipeline"] == "train":
        from pipelines.train import train_worker

        train_worker(spec)
    else:
        from pipelines.classify import classify_worker

        classify_worker(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
