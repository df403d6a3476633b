"""How reliable is a training recipe? Train it on many seeds and measure how often it works.

    python -m pipelines.seeds --task copy --seeds 0-19 --workers 2 --max_minutes 3

One parent run (experiment ``seeds-<task>``) with one ``train`` run per seed, each exactly
the run ``train`` would make, ``--workers`` at a time. Every ``train`` option applies to every
seed. A seed stops at ``--threshold`` val_bits_per_seq unless ``--train_past``. The parent
logs success_rate, seeds_reached, the median and p90 episodes and the median seconds to the
threshold (read from each seed's validation curve), the median and minimum bit accuracy at
each test length, seeds/summary.csv, seeds/summary.md (also its description) and
seeds/curves.png. Re-running the same command resumes the study: finished and failed seeds
are kept, killed ones resumed, missing ones trained.
"""

import sys

from pipelines.common.cli import run_pipeline
from pipelines.studies.seeds import SeedsConfig, seeds_study

CONFIG = SeedsConfig  # the schema of this command's options


def main(argv: list[str] | None = None) -> int:
    return run_pipeline("seeds", CONFIG, seeds_study, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
