"""The outbox keeps, spools and retries what an unreachable store refuses."""

from __future__ import annotations

import pytest

from pipelines.outbox import SPOOL_FILE, TrackingOutbox


class _FlakyClient:
    """Records what arrives; refuses everything while ``down``."""

    tracking_uri = "http://flaky"

    def __init__(self) -> None:
        self.down = False
        self.metrics: list[tuple[str, float, int]] = []
        self.artifacts: list[tuple[str, str | None]] = []
        self.attempts = 0

    def log_batch(self, run_id, metrics):
        self.attempts += 1
        if self.down:
            raise ConnectionError("connection refused")
        self.metrics += [(m.key, m.value, m.step) for m in metrics]

    def log_artifact(self, run_id, local_path, artifact_path=None):
        if self.down:
            raise ConnectionError("connection refused")
        self.artifacts.append((local_path.rsplit("/", 1)[-1], artifact_path))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path):
    client, clock = _FlakyClient(), _Clock()
    outbox = TrackingOutbox("run", client=client, spool_dir=tmp_path, clock=clock)
    return outbox, client, clock


def test_sends_at_once_when_the_store_answers(parts):
    outbox, client, _ = parts
    outbox.log_metrics({"loss": 0.5}, step=3)
    assert client.metrics == [("loss", 0.5, 3)] and outbox.pending == 0


def test_outage_buffers_spools_backs_off_and_delivers_in_order(parts, tmp_path, capsys):
    outbox, client, clock = parts
    client.down = True
    outbox.log_metrics({"loss": 1.0}, step=1)
    assert "unreachable" in capsys.readouterr().err
    assert (tmp_path / SPOOL_FILE).read_text().count("\n") == 1
    attempts = client.attempts
    outbox.log_metrics({"loss": 2.0}, step=2)  # within the 1 s backoff: no new attempt
    assert client.attempts == attempts
    clock.now = 1.0
    outbox.log_metrics({"loss": 3.0}, step=3)  # retried, failed again: backoff is now 2 s
    assert client.attempts == attempts + 1
    clock.now = 2.5
    outbox.log_metrics({"loss": 4.0}, step=4)
    assert client.attempts == attempts + 1
    client.down = False
    clock.now = 3.0
    outbox.log_metrics({"loss": 5.0}, step=5)
    assert [step for _, _, step in client.metrics] == [1, 2, 3, 4, 5]
    assert "reachable again" in capsys.readouterr().err
    assert not (tmp_path / SPOOL_FILE).exists()


def test_spool_survives_the_process_and_a_new_outbox_delivers_it(parts, tmp_path):
    outbox, client, _ = parts
    client.down = True
    outbox.log_metrics({"val": 0.1}, step=20)
    later_client = _FlakyClient()
    later = TrackingOutbox("run", client=later_client, spool_dir=tmp_path)
    assert later.pending == 1 and later.close(timeout_s=0)
    assert later_client.metrics == [("val", 0.1, 20)]


def test_close_warns_with_the_upload_command_when_the_store_stays_away(parts, capsys):
    outbox, client, _clock = parts
    client.down = True
    outbox.log_metrics({"val": 0.1}, step=20)
    assert outbox.close(timeout_s=0) is False
    err = capsys.readouterr().err
    assert "python -m pipelines.outbox run" in err and "1 metric points" in err


def test_artifacts_wait_and_the_newest_version_of_a_file_wins(parts, tmp_path):
    outbox, client, _clock = parts
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_text("v1")
    client.down = True
    outbox.log_artifact(checkpoint, "checkpoints")
    outbox.log_artifact(checkpoint, "checkpoints")
    assert outbox.pending == 1
    client.down = False
    assert outbox.flush(force=True)
    assert client.artifacts == [("last.ckpt", "checkpoints")]


def test_steps_already_in_the_run_are_not_logged_twice(parts):
    outbox, client, _ = parts
    outbox.skip_logged({"loss": 10})
    outbox.log_metrics({"loss": 1.0, "other": 2.0}, step=10)
    outbox.log_metrics({"loss": 3.0}, step=11)
    assert client.metrics == [("other", 2.0, 10), ("loss", 3.0, 11)]
