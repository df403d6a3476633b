from types import SimpleNamespace

import pytest
import torch

from datamodules.curriculum import LengthCurriculum
from datamodules.synthetic import (
    AssociativeRecallTask,
    CopyTask,
    RepeatCopyTask,
    SyntheticDataModule,
    build_task,
    seeded_generator,
)


def test_copy_layout_for_one_hand_checked_sequence():
    task = CopyTask(bits=3, min_len=1, max_len=5)
    batch = task.generate(torch.tensor([2]), seeded_generator(7))
    inputs, targets, mask = (t[0] for t in batch)
    assert inputs.shape == (5, 4) and targets.shape == (5, 3) and mask.shape == (5,)
    vectors = inputs[:2, :3]
    # delimiter alone on its own channel at step L=2, nothing else on that channel
    assert inputs[:, 3].tolist() == [0, 0, 1, 0, 0]
    assert inputs[2:, :3].abs().sum() == 0
    assert mask.tolist() == [False, False, False, True, True]
    assert torch.equal(targets[3:], vectors)
    assert targets[:3].abs().sum() == 0


def test_variable_lengths_pad_at_the_end_and_mask_each_window():
    task = CopyTask(bits=8, min_len=1, max_len=20)
    lengths = torch.tensor([1, 4, 7])
    inputs, targets, mask = task.generate(lengths, seeded_generator(1))
    assert inputs.shape == (3, 15, 9)
    for item, length in enumerate(lengths.tolist()):
        assert mask[item].nonzero().flatten().tolist() == list(range(length + 1, 2 * length + 1))
        assert inputs[item, :, 8].nonzero().flatten().tolist() == [length]
        assert torch.equal(targets[item, length + 1 : 2 * length + 1], inputs[item, :length, :8])
        assert inputs[item, length + 1 :].abs().sum() == 0
        assert targets[item, ~mask[item]].abs().sum() == 0


def test_train_stream_is_seeded_and_lengths_stay_in_range():
    task = CopyTask(min_len=3, max_len=6)
    dm_a = SyntheticDataModule(task, batch_size=4, batches_per_epoch=50, seed=11)
    dm_b = SyntheticDataModule(task, batch_size=4, batches_per_epoch=50, seed=11)
    batches_a = list(dm_a.train_dataloader())
    batches_b = list(dm_b.train_dataloader())
    assert len(batches_a) == 50
    lengths = set()
    for a, b in zip(batches_a, batches_b, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        per_item = a.mask.sum(dim=1)
        assert (per_item == per_item[0]).all(), "one length per training batch"
        lengths.add(int(per_item[0]))
    assert lengths <= set(range(3, 7)) and len(lengths) > 1


def test_next_epoch_draws_new_batches_and_other_seed_differs():
    task = CopyTask()
    dm = SyntheticDataModule(task, batch_size=4, batches_per_epoch=3, seed=0)
    loader = dm.train_dataloader()
    epoch_one = list(loader)
    first = epoch_one[0].inputs
    assert not torch.equal(first, next(iter(loader)).inputs), "epoch 2 continues the stream"
    other = SyntheticDataModule(task, batch_size=4, batches_per_epoch=3, seed=1)
    assert not torch.equal(first, next(iter(other.train_dataloader())).inputs)


def test_validation_set_is_fixed_sorted_and_sized():
    task = CopyTask(min_len=1, max_len=20)
    dm = SyntheticDataModule(task, val_size=1000, eval_batch_size=300, seed=3)
    batches = dm.val_batches()
    assert sum(b.inputs.shape[0] for b in batches) == 1000
    assert [b.inputs.shape[0] for b in batches] == [300, 300, 300, 100]
    lengths = torch.cat([b.mask.sum(dim=1) for b in batches])
    assert lengths.min() >= 1 and lengths.max() <= 20
    assert torch.equal(lengths, torch.sort(lengths).values)
    again = SyntheticDataModule(task, val_size=1000, eval_batch_size=300, seed=3).val_batches()
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(batches, again, strict=True))


def test_test_sets_have_exact_lengths():
    dm = SyntheticDataModule(CopyTask(), test_lengths=(5, 40), test_size=10, seed=0)
    loaders = dm.test_dataloader()
    assert len(loaders) == 2
    for loader, length in zip(loaders, (5, 40), strict=True):
        (batch,) = list(loader)
        assert batch.inputs.shape == (10, 2 * length + 1, 9)
        assert (batch.mask.sum(dim=1) == length).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_len": 0}, "min_len must be >= 1"),
        ({"min_len": 5, "max_len": 3}, "must not exceed max_len"),
        ({"bits": 0}, "bits must be >= 1"),
    ],
)
def test_bad_task_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        build_task("copy", **options)


def test_unknown_task_and_bad_test_length():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        build_task("nope")
    with pytest.raises(ValueError, match="positive integers"):
        SyntheticDataModule(CopyTask(), test_lengths=(0,))


def test_train_stream_resumes_mid_epoch_from_the_trainer_position():
    """A fit resumed at step k sees batch k next, and the epoch ends on its usual boundary."""
    task = CopyTask(min_len=1, max_len=5)
    dm = SyntheticDataModule(task, batch_size=2, batches_per_epoch=4, seed=3)
    stream = _endless(dm.train_dataloader())
    uninterrupted = [next(stream).inputs for _ in range(8)]
    position = 6
    dm.trainer = SimpleNamespace(global_step=position)
    resumed = list(dm.train_dataloader())
    assert len(resumed) == 2, "steps 6 and 7 finish the second epoch"
    for expected, batch in zip(uninterrupted[position:], resumed, strict=True):
        assert torch.equal(expected, batch.inputs)


def _lengths(loader) -> list[int]:
    """Each training batch's one sequence length (copy: the scored steps)."""
    return [int(batch.mask[0].sum()) for batch in loader]


def test_a_curriculum_holds_the_stream_to_its_range_and_follows_the_start():
    task = CopyTask(min_len=1, max_len=6)
    dm = SyntheticDataModule(task, 2, 40, seed=4, curriculum=LengthCurriculum(10))
    lengths = _lengths(dm.train_dataloader())
    for step, length in enumerate(lengths):
        assert 1 <= length <= min(6, 2 + step // 10), f"step {step}"
    assert max(lengths[30:]) > 4, "the range has widened past 1..4 by step 30"
    dm.follow_starts(lambda: 20)  # a restart at step 20 begins the curriculum again
    again = _lengths(dm.train_dataloader())
    assert max(again[20:30]) <= 2 and again[20:30] != lengths[20:30]
    assert max(again[30:40]) <= 3


def test_a_finished_curriculum_leaves_the_stream_exactly_as_without_one():
    task = CopyTask(min_len=1, max_len=4)
    plain = SyntheticDataModule(task, 2, 30, seed=8)
    taught = SyntheticDataModule(task, 2, 30, seed=8, curriculum=LengthCurriculum(5))
    pairs = list(zip(plain.train_dataloader(), taught.train_dataloader(), strict=True))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in pairs[10:]), "full range from 10"
    assert any(not torch.equal(a.inputs, b.inputs) for a, b in pairs[:10])


def _endless(loader):
    while True:
        yield from loader


# ---------------------------------------------------------------- repeat copy


def test_repeat_copy_layout_for_one_hand_checked_episode():
    task = RepeatCopyTask(bits=3, min_repeats=1, max_repeats=10, test_repeats=3)
    inputs, targets, mask = (t[0] for t in task.generate(torch.tensor([2]), seeded_generator(5)))
    # T = L + R*L + 2 = 2 + 6 + 2
    assert inputs.shape == (10, 5) and targets.shape == (10, 4) and mask.shape == (10,)
    vectors = inputs[:2, :3]
    assert inputs[:, 3].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0], "delimiter at step L"
    assert inputs[2, 4].item() == pytest.approx((3 - 5.5) / (99 / 12) ** 0.5)
    assert inputs[3:].abs().sum() == 0 and inputs[:2, 3:].abs().sum() == 0
    assert mask.tolist() == [False] * 3 + [True] * 7
    assert torch.equal(targets[3:9, :3], torch.cat([vectors] * 3))
    assert targets[:, 3].tolist() == [0] * 9 + [1], "end marker after the last repeat"
    assert targets[:9, 3].sum() == 0 and targets[9, :3].sum() == 0


def test_repeat_count_channel_has_mean_0_and_variance_1_over_training_repeats():
    task = RepeatCopyTask(min_repeats=1, max_repeats=10)
    channel = task.normalized_repeats(torch.arange(1, 11))
    assert channel.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert channel.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    # a test set with more repeats keeps the training normalization (values beyond the range)
    assert task.with_repeats(20).normalized_repeats(torch.tensor([20])).item() > channel.max()


def test_repeat_copy_pads_items_of_different_lengths_and_repeats():
    task = RepeatCopyTask(bits=4)
    lengths = torch.tensor([1, 3, 5, 2])
    inputs, targets, mask = task.generate(lengths, seeded_generator(2))
    for item, length in enumerate(lengths.tolist()):
        repeats_value = inputs[item, length, 5].item()
        repeats = round(repeats_value * task.repeat_std + task.repeat_mean)
        assert 1 <= repeats <= 10
        window = list(range(length + 1, length + repeats * length + 2))
        assert mask[item].nonzero().flatten().tolist() == window
        expected = inputs[item, :length, :4].repeat(repeats, 1)
        assert torch.equal(targets[item, window[:-1], :4], expected)
        assert targets[item, :, 4].nonzero().flatten().tolist() == [window[-1]]


# ---------------------------------------------------------------- associative recall


def test_associative_recall_answer_for_one_hand_checked_episode():
    task = AssociativeRecallTask(bits=6, item_size=3)
    inputs, targets, mask = (t[0] for t in task.generate(torch.tensor([4]), seeded_generator(9)))
    assert inputs.shape == (4 * 4 + 8, 8) and targets.shape == (24, 6)
    items = [inputs[4 * k + 1 : 4 * k + 4, :6] for k in range(4)]
    assert inputs[:, 6].nonzero().flatten().tolist() == [0, 4, 8, 12], "item delimiters"
    assert inputs[:, 7].nonzero().flatten().tolist() == [16, 20], "query delimiters"
    query = inputs[17:20, :6]
    (position,) = [k for k in range(3) if torch.equal(items[k], query)]
    assert mask.nonzero().flatten().tolist() == [21, 22, 23]
    assert torch.equal(targets[21:24], items[position + 1])
    assert targets[:21].abs().sum() == 0 and inputs[21:].abs().sum() == 0


def test_associative_recall_queries_every_position_but_the_last():
    task = AssociativeRecallTask(bits=6)
    counts = torch.full((400,), 3)
    inputs, targets, mask = task.generate(counts, seeded_generator(4))
    items = inputs[:, :12].view(400, 3, 4, 8)[:, :, 1:, :6]
    query = inputs[:, 13:16, :6]
    positions = (items == query[:, None]).flatten(2).all(-1).float().argmax(dim=1)
    assert set(positions.tolist()) == {0, 1}
    assert torch.equal(targets[mask].view(400, 3, 6), items[torch.arange(400), positions + 1])


def test_associative_recall_pads_episodes_of_different_item_counts():
    task = AssociativeRecallTask()
    counts = torch.tensor([2, 6, 4])
    inputs, _, mask = task.generate(counts, seeded_generator(0))
    assert inputs.shape[1] == 4 * 6 + 8
    for item, count in enumerate(counts.tolist()):
        assert mask[item].nonzero().flatten().tolist() == [4 * count + k for k in (5, 6, 7)]
        assert inputs[item, :, 6].sum() == count
        assert inputs[item, 4 * count + 8 :].abs().sum() == 0


@pytest.mark.parametrize("name", ["copy", "repeat_copy", "associative_recall"])
def test_every_task_is_seeded_and_declares_its_widths(name):
    task = build_task(name)
    lengths = task.sample_lengths(8, seeded_generator(1))
    first = task.generate(lengths, seeded_generator(3))
    again = task.generate(lengths, seeded_generator(3))
    other = task.generate(lengths, seeded_generator(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first.inputs, other.inputs)
    assert first.inputs.shape[-1] == task.input_width
    assert first.targets.shape[-1] == task.output_width
    assert first.targets[~first.mask].abs().sum() == 0, "unscored steps carry no target"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("repeat_copy", {"min_repeats": 0}, "min_repeats must be >= 1"),
        ("repeat_copy", {"min_repeats": 4, "max_repeats": 2}, "must not exceed max_repeats"),
        ("associative_recall", {"min_len": 1}, "at least 2 items"),
        ("associative_recall", {"bits": 0}, "bits must be >= 1"),
    ],
)
def test_bad_options_of_the_other_tasks_are_rejected(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_task(name, **options)


def test_bad_test_lengths_are_rejected_for_every_task():
    with pytest.raises(ValueError, match="at least 2 items"):
        AssociativeRecallTask().check_length(1)
    with pytest.raises(ValueError, match="positive integers"):
        RepeatCopyTask().check_length(2.5)
    with pytest.raises(ValueError, match="repeats must be positive"):
        RepeatCopyTask().with_repeats(0)


# ---------------------------------------------------------------- data parallelism


def _on_rank(dm: SyntheticDataModule, rank: int, world: int, step: int = 0) -> SyntheticDataModule:
    dm.trainer = SimpleNamespace(global_step=step, global_rank=rank, world_size=world)
    return dm


def test_each_rank_draws_its_own_sequences_of_the_steps_shared_length():
    task = CopyTask(min_len=1, max_len=20)
    single = SyntheticDataModule(task, batch_size=4, batches_per_epoch=6, seed=5)
    alone = [batch.inputs for batch in single.train_dataloader()]
    ranks = [
        [
            b.inputs
            for b in _on_rank(SyntheticDataModule(task, 4, 6, seed=5), r, 2).train_dataloader()
        ]
        for r in (0, 1)
    ]
    for step, (solo, zero, one) in enumerate(zip(alone, *ranks, strict=True)):
        assert torch.equal(solo, zero), "rank 0 keeps the single-process stream"
        assert zero.shape == one.shape, f"step {step}: one length for every process"
        assert not torch.equal(zero, one), f"step {step}: rank 1 trains on other sequences"


def test_ranks_split_the_validation_and_test_sets_once_without_padding():
    task = CopyTask(min_len=1, max_len=8)
    dm = SyntheticDataModule(
        task, batch_size=2, val_size=45, eval_batch_size=20, test_lengths=(5,), test_size=7, seed=1
    )
    whole = torch.cat([b.inputs.flatten(1).sum(1) for b in dm.val_batches()])
    for world in (2, 3):
        parts, tested = [], 0
        for rank in range(world):
            loader = _on_rank(dm, rank, world).val_dataloader()
            parts.append(torch.cat([b.inputs.flatten(1).sum(1) for b in loader]))
            tests = _on_rank(dm, rank, world).test_dataloader()[0]
            tested += sum(b.inputs.shape[0] for b in tests)
        assert tested == 7, "the test set split across ranks, each sequence once"
        assert sum(len(part) for part in parts) == 45, "each sequence once"
        assert torch.equal(torch.sort(torch.cat(parts)).values, torch.sort(whole).values)
