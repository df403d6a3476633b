"""Ctrl-C during training: finish the batch, save a checkpoint, end the run KILLED."""

from __future__ import annotations

import signal

from pipelines.common.config import parse_config
from pipelines.common.interrupts import RunInterrupted
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import train
from pipelines.tracking.checkpoints import load_checkpoint
from pipelines.tracking.resume import checkpoint_dir
from tests.conftest import CtrlCAt

TINY = [
    "--model",
    "lstm",
    "--hidden_size",
    "16",
    "--num_layers",
    "1",
    "--max_steps",
    "200",
    "--batches_per_epoch",
    "20",
    "--val_size",
    "50",
    "--test_lengths",
    "5",
    "--test_size",
    "20",
    "--plot_every_n_val",
    "100",
]


def test_ctrl_c_ends_the_run_killed_with_a_checkpoint_at_the_batch_boundary(client):
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    try:
        train(parse_config(TrainConfig, TINY), callbacks=[CtrlCAt(27)])
    except RunInterrupted as interrupted:
        assert interrupted.signal_name == "SIGINT" and interrupted.exit_code == 130
    else:
        raise AssertionError("training went on after Ctrl-C")
    (run,) = client.search_runs([client.get_experiment_by_name("copy").experiment_id])
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "interrupted by SIGINT"
    checkpoint = load_checkpoint(checkpoint_dir(run.info.run_id) / "last.ckpt")
    assert checkpoint["global_step"] == 27, "stopped after the batch that was running"
    assert signal.getsignal(signal.SIGINT) is before, "the previous handler is restored"
