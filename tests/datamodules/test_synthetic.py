from types import SimpleNamespace

import pytest
import torch

from datamodules.synthetic import CopyTask, SyntheticDataModule, build_task, seeded_generator


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


def _endless(loader):
    while True:
        yield from loader
