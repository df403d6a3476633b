"""Atomic checkpoint writes and clear errors for bad checkpoint files."""

from __future__ import annotations

import pytest
import torch

from pipelines.tracking.checkpoints import CheckpointError, atomic_torch_save, load_checkpoint


class _ExplodesWhenPickled:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"state_dict": {"w": _ExplodesWhenPickled()}}, path)
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "no temp file left behind"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "corrupt or unreadable"),
        (b"PK\x03\x04garbage", "corrupt or unreadable"),
        (None, "does not exist"),
    ],
)
def test_bad_checkpoint_files_raise_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_truncated_real_checkpoint_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(path)


def test_a_tensor_file_that_is_not_a_training_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(path)
