"""The settings measured to reach each model's and task's targets, as data.

Every option left empty on the command line is filled from here (``TrainConfig.resolve``), so
a run logs the values it really used. Why each value is what it is, and what it was measured
against, is in docs/training.md ("Models"); how reliably they do is in docs/results.md.
"""

from __future__ import annotations

from dataclasses import dataclass

# Adam 3e-3 for both; the NTM clips the gradient norm at 1 (a rare spike otherwise parks a read
# head on one slot), the 3 x 256 LSTM at 10.
RECIPE_LR = {"ntm": 3e-3, "lstm": 3e-3}
RECIPE_CLIP = {"ntm": 1.0, "lstm": 10.0}
# Halve the rate once more than this many validations bring no new best: a converged NTM at a
# constant rate relapsed to chance; the LSTM's noisy validation needs a longer patience.
RECIPE_LR_DECAY_PATIENCE = {"ntm": 1, "lstm": 3}
# The plateau decay stops at this fraction of the starting rate (the LSTM's stalled at 3e-6).
RECIPE_LR_DECAY_FLOOR = {"ntm": 0.0, "lstm": 0.25}
# Batch size of every model the NTM task recipes do not cover.
RECIPE_BATCH_SIZE = 64
# --compile's default: runs at least this long amortize the compile.
COMPILE_FROM_STEPS, COMPILE_FROM_MINUTES = 1000, 1.0


@dataclass(frozen=True)
class NtmTaskRecipe:
    """The NTM settings measured to reach one task's target."""

    controller: str
    location_first_init: bool
    controller_size: int
    heads: int  # read heads and write heads each
    batch_size: int
    lr_decay_patience: int
    beta_init: float = 0.0  # 0: Linear's bias (beta ~ 0.7)
    memory_init: str = "constant"
    # restart from fresh weights once the start's best fell by less than restart_min_improvement
    # over restart_patience validations while above restart_above (0: never)
    restart_patience: int = 0
    restart_above: float = 0.1
    restart_min_improvement: float = 0.01
    # roll back to the start's best weights at half the rate when a validation is above
    # relapse_factor x that best + 1 bit (0: never)
    relapse_factor: float = 2.0
    # widen the training range by one length (item) every this many steps of a start (0: off)
    curriculum_steps_per_length: int = 0


NTM_TASK_RECIPES = {
    # dense: a controller without state of its own must use the memory
    "copy": NtmTaskRecipe(
        "dense", True, 100, 1, 64, RECIPE_LR_DECAY_PATIENCE["ntm"], restart_patience=8
    ),
    # counting the repeats needs a state: the LSTM controller; no setback rules (all seeds
    # converge on their own, and rollbacks would halve the rate before the count is learned)
    "repeat_copy": NtmTaskRecipe("lstm", True, 100, 1, 16, 0, relapse_factor=0.0),
    # the paper's 4 + 4 heads and 256 units, content-first heads with key strength 5, a fresh
    # random memory per episode (a constant one has rows a lookup cannot tell apart), a coarser
    # stall rule for the ~4 bits/seq plateau, and an item-count curriculum against it
    "associative_recall": NtmTaskRecipe(
        "dense",
        False,
        256,
        4,
        32,
        0,
        beta_init=5.0,
        memory_init="random",
        restart_patience=3,
        restart_above=1.0,
        restart_min_improvement=0.25,
        curriculum_steps_per_length=150,
    ),
}
