"""The LightningDataModule of the synthetic tasks (:mod:`datamodules.tasks`).

Batching of variable lengths:

* **training**: every batch draws *one* length and all its sequences share it. No step is
  wasted on padding, which roughly halves the cost of a batch versus padding to the longest.
* **validation / test**: sequences of different lengths are padded *at the end* and the mask
  covers each item's own output window. Padding after the output window cannot change a causal
  model's outputs inside it, so scores equal those of unpadded sequences. The validation set is
  sorted by length before it is cut into batches to keep that padding small.
* **long validation** (optional): sequences longer than any trained on, from a stream of
  their own, so the best checkpoint can be chosen by how it generalizes without ever looking
  at a test set.

All data is a pure function of ``(seed, stream, index)``: batch ``k`` of the training stream is
the same whatever happened before it, which makes runs reproducible and resumable. A length
curriculum (:mod:`datamodules.curriculum`) adds one input, the step the current start began,
which the setback rules keep in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.curriculum import LengthCurriculum
from datamodules.tasks import (  # noqa: F401 (the tasks were defined here; old imports still work)
    TASKS,
    AssociativeRecallTask,
    CopyTask,
    RepeatCopyTask,
    SequenceBatch,
    SyntheticTask,
    build_task,
    seeded_generator,
)

TRAIN_STREAM, VAL_STREAM, TEST_STREAM, PLOT_STREAM, LONG_VAL_STREAM = 0, 1, 2, 3, 4


class _StreamPositionSampler(Sampler[int]):
    """Global batch indices from the training position to the end of its epoch.

    The start is read when iteration really begins (a generator body runs on the first
    ``next``), so a fit resumed from a mid-epoch checkpoint continues the stream exactly where
    the interrupted one stopped instead of replaying the epoch. ``position`` is the trainer's
    global step when one is attached; used alone, the sampler continues from its own count.
    """

    def __init__(self, batches_per_epoch: int, position: Callable[[], int] | None = None) -> None:
        self.batches_per_epoch = batches_per_epoch
        self.position = position
        self._next_index = 0

    def __iter__(self) -> Iterator[int]:
        start = self.position() if self.position is not None else self._next_index
        stop = (start // self.batches_per_epoch + 1) * self.batches_per_epoch
        for index in range(start, stop):
            self._next_index = index + 1
            yield index

    def __len__(self) -> int:
        return self.batches_per_epoch


class _TrainStream(Dataset):
    """Batch ``k`` of an endless, seeded stream; every batch has one shared length.

    Under data parallelism process ``rank`` draws its own part of step ``k``: the length comes
    from ``(seed, stream, k)`` for every rank (no process waits for a longer one), the content
    from ``(seed, stream, k)`` on rank 0 (the single-process stream, unchanged) and from
    ``(seed, stream, k, rank)`` on the others, so N processes train on N times as many distinct
    sequences per step, reproducibly.
    """

    def __init__(
        self,
        task: SyntheticTask,
        batch_size: int,
        seed: int,
        rank: int,
        upper: Callable[[int], int],
    ) -> None:
        self.task, self.batch_size, self.seed, self.rank = task, batch_size, seed, rank
        self.upper = upper  # batch index -> the longest length it may draw (a curriculum's)

    def __len__(self) -> int:  # endless: the sampler decides which indices exist
        return 2**62

    def __getitem__(self, index: int) -> SequenceBatch:
        generator = seeded_generator(self.seed, TRAIN_STREAM, index)
        length = self.task.sample_lengths(1, generator, self.upper(index))
        if self.rank:
            generator = seeded_generator(self.seed, TRAIN_STREAM, index, self.rank)
        return self.task.generate(length.expand(self.batch_size), generator)


class _FixedBatches(Dataset):
    """A list of ready batches (validation or test sets)."""

    def __init__(self, batches: list[SequenceBatch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> SequenceBatch:
        return self.batches[index]


def make_fixed_set(
    task: SyntheticTask,
    lengths: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> list[SequenceBatch]:
    """Sort ``lengths``, cut them into batches and generate each (padding stays small)."""
    ordered = torch.sort(lengths).values
    return [task.generate(chunk, generator) for chunk in torch.split(ordered, batch_size)]


def make_test_set(
    task: SyntheticTask, length: int, size: int, batch_size: int, seed: int
) -> list[SequenceBatch]:
    """``size`` episodes of exactly ``length``, seeded by ``(seed, length)``.

    Training and evaluation build test sets here, so a score at a length means the same
    sequences wherever it was computed.
    """
    task.check_length(length)
    generator = seeded_generator(seed, TEST_STREAM, length)
    lengths = torch.full((size,), length, dtype=torch.int64)
    return make_fixed_set(task, lengths, batch_size, generator)


class SyntheticDataModule(pl.LightningDataModule):
    """Seeded train stream, fixed validation set, and one test set per test length.

    With a ``curriculum`` the training stream's range widens as a start trains; the step a
    start began comes from ``follow_starts`` (restarts from fresh weights begin it again).
    """

    def __init__(
        self,
        task: SyntheticTask,
        batch_size: int = 16,
        batches_per_epoch: int = 100,
        val_size: int = 1000,
        eval_batch_size: int = 500,
        test_lengths: Sequence[int] = (),
        test_size: int = 1000,
        seed: int = 0,
        curriculum: LengthCurriculum | None = None,
        long_val_lengths: Sequence[int] = (),
        long_val_size: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("batches_per_epoch", batches_per_epoch),
            ("val_size", val_size),
            ("eval_batch_size", eval_batch_size),
            ("test_size", test_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for length in (*test_lengths, *long_val_lengths):
            task.check_length(length)
        if long_val_size < 0:
            raise ValueError(f"long_val_size must be >= 0, got {long_val_size}")
        if long_val_size and not long_val_lengths:
            raise ValueError("a long validation set needs at least one length")
        self.task = task
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.val_size = val_size
        self.eval_batch_size = eval_batch_size
        self.test_lengths = tuple(test_lengths)
        self.test_size = test_size
        self.seed = seed
        self.curriculum = curriculum
        self.long_val_lengths = tuple(long_val_lengths)
        self.long_val_size = long_val_size if long_val_lengths else 0
        self._long_val: list[SequenceBatch] | None = None
        self._start_step: Callable[[], int] = lambda: 0
        self._val: list[SequenceBatch] | None = None

    def follow_starts(self, start_step: Callable[[], int]) -> None:
        """Count the curriculum from ``start_step()``, the step the current start began."""
        self._start_step = start_step

    def train_upper(self, index: int) -> int:
        """The longest training length (most items) of training batch ``index`` (without a
        curriculum the task's, which draws the stream exactly as no bound would)."""
        task = self.task
        if self.curriculum is None:
            return task.max_len
        steps_into_start = max(0, index - self._start_step())
        return self.curriculum.upper(task.min_len, task.max_len, steps_into_start)

    def val_batches(self) -> list[SequenceBatch]:
        """The fixed validation set (lengths from the training range), built once."""
        if self._val is None:
            generator = seeded_generator(self.seed, VAL_STREAM)
            lengths = self.task.sample_lengths(self.val_size, generator)
            self._val = make_fixed_set(self.task, lengths, self.eval_batch_size, generator)
        return self._val

    def long_val_batches(self) -> list[SequenceBatch]:
        """The long validation set: ``long_val_size`` sequences, each length drawn uniformly
        from ``long_val_lengths`` (empty when there is none), built once."""
        if self._long_val is None:
            self._long_val = []
            if self.long_val_size:
                generator = seeded_generator(self.seed, LONG_VAL_STREAM)
                choices = torch.tensor(self.long_val_lengths, dtype=torch.int64)
                picks = torch.randint(len(choices), (self.long_val_size,), generator=generator)
                batches = make_fixed_set(self.task, choices[picks], self.eval_batch_size, generator)
                self._long_val = batches
        return self._long_val

    def test_batches(self, length: int) -> list[SequenceBatch]:
        """``test_size`` sequences of exactly ``length``, seeded by the length."""
        return make_test_set(self.task, length, self.test_size, self.eval_batch_size, self.seed)

    def plot_example(self) -> SequenceBatch:
        """One validation-distribution sequence of the longest training length, for figures."""
        generator = seeded_generator(self.seed, PLOT_STREAM)
        return self.task.generate(torch.tensor([self.task.max_len]), generator)

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return getattr(trainer, "global_rank", 0), getattr(trainer, "world_size", 1)

    def _shard(self, batches: list[SequenceBatch]) -> _FixedBatches:
        """Process ``rank`` of N scores part ``rank`` of every batch (split along the batch):
        the fixed set once overall, no padding, no duplicates, every process busy even when
        the set is one batch; the metrics sum the parts."""
        rank, world = self._rank_and_world()
        if world == 1:
            return _FixedBatches(batches)
        parts = [SequenceBatch(*(t.tensor_split(world)[rank] for t in batch)) for batch in batches]
        return _FixedBatches([part for part in parts if part.inputs.shape[0] > 0])

    def train_dataloader(self) -> DataLoader:
        rank, _ = self._rank_and_world()
        stream = _TrainStream(self.task, self.batch_size, self.seed, rank, self.train_upper)
        trainer = self.trainer
        position = (lambda: trainer.global_step) if trainer is not None else None
        sampler = _StreamPositionSampler(self.batches_per_epoch, position)
        return DataLoader(stream, batch_size=None, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The validation set, then the long validation set when there is one (the
        module tells them apart by ``dataloader_idx``)."""
        validation = DataLoader(self._shard(self.val_batches()), batch_size=None)
        if not self.long_val_size:
            return validation
        return [validation, DataLoader(self._shard(self.long_val_batches()), batch_size=None)]

    def test_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(self._shard(self.test_batches(length)), batch_size=None)
            for length in self.test_lengths
        ]
