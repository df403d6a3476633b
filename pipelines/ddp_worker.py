"""A data-parallel worker process: one fit of a training pipeline, in lockstep with rank 0,
described by rank 0 in ``$NTMLAB_DDP_WORKER`` (:func:`pipelines.common.ddp.worker_processes`).

Not a user command: rank 0 starts it with ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. The worker tracks nothing; it exits 0 when the fit ends or rank 0 stops
it with a signal, and non-zero on a crash (rank 0 then fails at its next all-reduce).
"""

import json
import os
import sys

from pipelines.common.ddp import WORKER_SPEC_ENV, run_worker


def main() -> int:
    run_worker(json.loads(os.environ[WORKER_SPEC_ENV]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
