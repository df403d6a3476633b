"""The synthetic algorithmic tasks of Graves et al. 2014, section 4: copy, repeat copy and
associative recall, each a pure function of ``(seed, stream, index)``.

Every task produces a :class:`SequenceBatch` ``(inputs [B,T,I], targets [B,T,O], mask [B,T])``;
``mask`` marks the steps whose output is scored, so every model trains on every task the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np
import torch


class SequenceBatch(NamedTuple):
    """Inputs ``[B,T,I]``, targets ``[B,T,O]`` and a boolean mask ``[B,T]`` of scored steps."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor


def seeded_generator(*key: int) -> torch.Generator:
    """A CPU generator whose state is a hash of ``key``: independent streams, no collisions."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator()
    generator.manual_seed(int(state))
    return generator


class SyntheticTask(ABC):
    """A task generator over vectors of ``bits`` bits. ``length`` is the difficulty knob
    (sequence length, items...).

    Class attributes give each task's paper defaults so configs can leave them empty.
    """

    name: str = ""
    input_width: int
    output_width: int
    default_bits: int = 8
    default_range: tuple[int, int] = (1, 20)
    default_test_lengths: tuple[int, ...] = (20, 40, 80, 120)  # scored at the end of training
    default_eval_lengths: tuple[int, ...] = (10, 20, 40, 80, 120)  # the evaluate pipeline's

    def __init__(self, bits: int, min_len: int, max_len: int) -> None:
        if bits < 1:
            raise ValueError(f"bits must be >= 1, got {bits}")
        self.bits = bits
        if min_len < 1:
            raise ValueError(f"min_len must be >= 1, got {min_len}")
        if max_len < min_len:
            raise ValueError(f"min_len ({min_len}) must not exceed max_len ({max_len})")
        self.min_len = min_len
        self.max_len = max_len

    def sample_lengths(
        self, count: int, generator: torch.Generator, upper: int | None = None
    ) -> torch.Tensor:
        """Lengths drawn uniformly from the training range ``[min_len, max_len]``, or from
        ``[min_len, upper]`` while a curriculum holds the range shorter."""
        high = self.max_len if upper is None else upper
        return torch.randint(self.min_len, high + 1, (count,), generator=generator)

    def check_length(self, length: int) -> None:
        """Raise ``ValueError`` for a length this task cannot generate (e.g. a test length)."""
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"{self.name}: lengths must be positive integers, got {length!r}")

    def slots_needed(self, length: int) -> int:
        """Memory rows a memory model needs to hold one episode of ``length`` (one per vector)."""
        return length

    def label(self, length: int) -> str:
        """How metric names refer to a test set of ``length`` (``bit_acc_<label>``)."""
        return f"L{length}"

    @abstractmethod
    def generate(self, lengths: torch.Tensor, generator: torch.Generator) -> SequenceBatch:
        """One batch with per-item ``lengths`` (int64 ``[B]``), padded at the end."""


class CopyTask(SyntheticTask):
    """Copy (Graves et al. 2014, 4.1): read random bit vectors, then a delimiter, then recall.

    Layout for a sequence of length ``L`` (``T = 2L + 1`` steps): steps ``0..L-1`` carry the
    vectors on channels ``0..bits-1``; step ``L`` carries the delimiter on channel ``bits``;
    steps ``L+1..2L`` are blank inputs whose targets are the vectors in order.
    """

    name = "copy"

    def __init__(self, bits: int = 8, min_len: int = 1, max_len: int = 20) -> None:
        super().__init__(bits, min_len, max_len)
        self.input_width = bits + 1
        self.output_width = bits

    def generate(self, lengths: torch.Tensor, generator: torch.Generator) -> SequenceBatch:
        lengths = lengths.to(torch.int64)
        batch, longest = lengths.numel(), int(lengths.max())
        steps = 2 * longest + 1
        vectors = torch.randint(0, 2, (batch, longest, self.bits), generator=generator).float()
        present = torch.arange(longest)[None, :] < lengths[:, None]
        vectors = vectors * present[..., None]

        inputs = torch.zeros(batch, steps, self.input_width, dtype=torch.float32)
        inputs[:, :longest, : self.bits] = vectors
        inputs[torch.arange(batch), lengths, self.bits] = 1.0

        # target step t of item b repeats vector j = t - L_b - 1 when 0 <= j < L_b
        source = torch.arange(steps)[None, :] - lengths[:, None] - 1
        mask = (source >= 0) & (source < lengths[:, None])
        index = source.clamp(0, longest - 1)[..., None].expand(batch, steps, self.bits)
        targets = torch.gather(vectors, 1, index) * mask[..., None]
        return SequenceBatch(inputs, targets, mask)


class RepeatCopyTask(SyntheticTask):
    """Repeat copy (Graves et al. 2014, 4.2): copy a sequence ``R`` times, then an end marker.

    Layout for length ``L`` and ``R`` repeats (``T = L + R*L + 2`` steps): steps ``0..L-1``
    carry the vectors; step ``L`` carries the delimiter (channel ``bits``) and the repeat count
    on channel ``bits+1``, normalized to mean 0 and variance 1 over the *training* repeat range
    (so a test with more repeats lies outside it, as in the paper); the targets of steps
    ``L+1..L+R*L`` are the vectors ``R`` times over and step ``L+R*L+1`` targets the end marker
    on output channel ``bits``. All those ``R*L+1`` steps are scored.

    ``test_repeats`` fixes ``R`` (for a test set) without changing the normalization.
    """

    name = "repeat_copy"
    default_range = (1, 10)
    default_test_lengths = (10, 20)
    default_eval_lengths = (10, 20)
    default_eval_repeats = (10, 20)  # evaluated on every (length, repeats) pair

    def __init__(
        self,
        bits: int = 8,
        min_len: int = 1,
        max_len: int = 10,
        min_repeats: int = 1,
        max_repeats: int = 10,
        test_repeats: int | None = None,
    ) -> None:
        super().__init__(bits, min_len, max_len)
        if min_repeats < 1:
            raise ValueError(f"min_repeats must be >= 1, got {min_repeats}")
        if max_repeats < min_repeats:
            raise ValueError(
                f"min_repeats ({min_repeats}) must not exceed max_repeats ({max_repeats})"
            )
        if test_repeats is not None and (isinstance(test_repeats, bool) or test_repeats < 1):
            raise ValueError(f"repeats must be positive integers, got {test_repeats!r}")
        self.min_repeats, self.max_repeats = min_repeats, max_repeats
        self.test_repeats = test_repeats
        self.input_width = bits + 2
        self.output_width = bits + 1
        # mean and std of the discrete uniform distribution over the training repeats
        count = max_repeats - min_repeats + 1
        self.repeat_mean = (min_repeats + max_repeats) / 2
        self.repeat_std = ((count**2 - 1) / 12) ** 0.5 or 1.0

    def with_repeats(self, repeats: int) -> RepeatCopyTask:
        """The same task with ``repeats`` fixed, normalized as in training (for test sets)."""
        return RepeatCopyTask(
            self.bits, self.min_len, self.max_len, self.min_repeats, self.max_repeats, repeats
        )

    def label(self, length: int) -> str:
        return f"L{length}" if self.test_repeats is None else f"L{length}_R{self.test_repeats}"

    def normalized_repeats(self, repeats: torch.Tensor) -> torch.Tensor:
        return (repeats.float() - self.repeat_mean) / self.repeat_std

    def generate(self, lengths: torch.Tensor, generator: torch.Generator) -> SequenceBatch:
        lengths = lengths.to(torch.int64)
        batch, longest = lengths.numel(), int(lengths.max())
        if self.test_repeats is not None:
            repeats = torch.full((batch,), self.test_repeats, dtype=torch.int64)
        else:
            repeats = torch.randint(
                self.min_repeats, self.max_repeats + 1, (batch,), generator=generator
            )
        steps = int((lengths + repeats * lengths).max()) + 2
        vectors = torch.randint(0, 2, (batch, longest, self.bits), generator=generator).float()
        present = torch.arange(longest)[None, :] < lengths[:, None]
        vectors = vectors * present[..., None]
        items = torch.arange(batch)

        inputs = torch.zeros(batch, steps, self.input_width, dtype=torch.float32)
        inputs[:, :longest, : self.bits] = vectors
        inputs[items, lengths, self.bits] = 1.0
        inputs[items, lengths, self.bits + 1] = self.normalized_repeats(repeats)

        # output step j = t - L - 1 of the window repeats vector j mod L; j = R*L is the marker
        source = torch.arange(steps)[None, :] - lengths[:, None] - 1
        copied = repeats * lengths
        copying = (source >= 0) & (source < copied[:, None])
        index = (source.clamp_min(0) % lengths[:, None])[..., None].expand(batch, steps, self.bits)
        targets = torch.zeros(batch, steps, self.output_width, dtype=torch.float32)
        targets[..., : self.bits] = torch.gather(vectors, 1, index) * copying[..., None]
        targets[items, lengths + copied + 1, self.bits] = 1.0
        mask = (source >= 0) & (source <= copied[:, None])
        return SequenceBatch(inputs, targets, mask)


class AssociativeRecallTask(SyntheticTask):
    """Associative recall (Graves et al. 2014, 4.3): given one item, recall the item after it.

    An item is ``item_size`` (3) vectors of ``bits`` (6) bits; an episode holds ``K`` items
    (the length knob, 2..6 in training). Layout (``T = 4K + 8`` steps for 3-vector items):
    each item is preceded by an item delimiter (channel ``bits``); then a query delimiter
    (channel ``bits+1``), a copy of one item chosen uniformly among the first ``K-1``, a second
    query delimiter, and ``item_size`` blank steps whose targets are the item that followed the
    query. Only those last steps are scored. Items are drawn independently; two equal 18-bit
    items in one episode (probability < 1e-4 at 6 items) make an answer ambiguous.
    """

    name = "associative_recall"
    default_bits = 6
    default_range = (2, 6)
    default_test_lengths = (6, 12)
    default_eval_lengths = (2, 4, 6, 8, 10, 12)

    def __init__(
        self, bits: int = 6, min_len: int = 2, max_len: int = 6, item_size: int = 3
    ) -> None:
        super().__init__(bits, min_len, max_len)
        if min_len < 2:
            raise ValueError(f"associative_recall needs at least 2 items, got min_len {min_len}")
        if item_size < 1:
            raise ValueError(f"item_size must be >= 1, got {item_size}")
        self.item_size = item_size
        self.input_width = bits + 2
        self.output_width = bits

    def check_length(self, length: int) -> None:
        super().check_length(length)
        if length < 2:
            raise ValueError(f"{self.name}: an episode needs at least 2 items, got {length}")

    def slots_needed(self, length: int) -> int:
        return length * self.item_size

    def generate(self, lengths: torch.Tensor, generator: torch.Generator) -> SequenceBatch:
        counts = lengths.to(torch.int64)
        batch, most = counts.numel(), int(counts.max())
        size, stride = self.item_size, self.item_size + 1
        steps = stride * most + 2 * size + 2
        items = torch.randint(0, 2, (batch, most, size, self.bits), generator=generator).float()
        present = torch.arange(most)[None, :] < counts[:, None]
        items = items * present[..., None, None]
        query = (torch.rand(batch, generator=generator) * (counts - 1)).long()
        rows = torch.arange(batch)

        inputs = torch.zeros(batch, steps, self.input_width, dtype=torch.float32)
        episode = inputs[:, : stride * most].view(batch, most, stride, self.input_width)
        episode[:, :, 0, self.bits] = present.float()
        episode[:, :, 1:, : self.bits] = items
        start = stride * counts  # first step after the last item
        offsets = torch.arange(size)
        inputs[rows, start, self.bits + 1] = 1.0
        query_steps = start[:, None] + 1 + offsets[None, :]
        inputs[rows[:, None], query_steps, : self.bits] = items[rows, query]
        inputs[rows, start + size + 1, self.bits + 1] = 1.0

        answer_steps = start[:, None] + size + 2 + offsets[None, :]
        targets = torch.zeros(batch, steps, self.output_width, dtype=torch.float32)
        targets[rows[:, None], answer_steps] = items[rows, query + 1]
        mask = torch.zeros(batch, steps, dtype=torch.bool)
        mask[rows[:, None], answer_steps] = True
        return SequenceBatch(inputs, targets, mask)


TASKS: dict[str, type[SyntheticTask]] = {
    "copy": CopyTask,
    "repeat_copy": RepeatCopyTask,
    "associative_recall": AssociativeRecallTask,
}


def build_task(name: str, **options: int) -> SyntheticTask:
    """Instantiate a task by name with its options (``bits``, ``min_len``, ``max_len``, ...)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**options)
