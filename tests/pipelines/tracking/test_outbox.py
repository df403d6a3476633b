"""The outbox keeps, spools and retries what an unreachable store refuses, the run's end too."""

from __future__ import annotations

import threading

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipelines.tracking.outbox import SPOOL_FILE, TrackingOutbox


class _FlakyClient:
    """A transport that records what arrives, in order; refuses everything while ``down``."""

    tracking_uri = "http://flaky"

    def __init__(self) -> None:
        self.down = False
        self.metrics: list[tuple[str, float, int]] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.events: list[str] = []
        self.status: str | None = None
        self.attempts = 0

    def _arrive(self, what: str) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("connection refused")
        self.events.append(what)

    def log_batch(self, run_id, metrics, params, tags):
        self._arrive("batch")
        self.metrics += [(m.key, m.value, m.step) for m in metrics]
        self.params.update({p.key: p.value for p in params})
        self.tags.update({t.key: t.value for t in tags})

    def log_inputs(self, run_id, datasets):
        self._arrive("inputs")

    def log_artifact(self, run_id, local_path, artifact_path=None):
        self._arrive("artifact")
        self.artifacts.append((local_path.name, artifact_path))

    def set_terminated(self, run_id, status, end_time):
        self._arrive("end")
        self.status = status


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path):
    client, clock = _FlakyClient(), _Clock()
    outbox = TrackingOutbox("run", client, spool_dir=tmp_path, clock=clock)
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
    later = TrackingOutbox("run", later_client, spool_dir=tmp_path)
    assert later.pending == 1 and later.close(timeout_s=0)
    assert later_client.metrics == [("val", 0.1, 20)]


def test_close_warns_with_the_upload_command_when_the_store_stays_away(parts, capsys):
    outbox, client, _clock = parts
    client.down = True
    outbox.log_metrics({"val": 0.1}, step=20)
    assert outbox.close(timeout_s=0) is False
    err = capsys.readouterr().err
    assert "python -m pipelines.tracking.outbox run" in err and "1 items of run run" in err


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


def test_the_end_of_a_run_waits_for_everything_before_it_and_survives_an_outage(parts, tmp_path):
    outbox, client, _ = parts
    figure_file = tmp_path / "plot.png"
    figure_file.write_text("png")
    client.down = True
    outbox.log_params({"lr": 0.01})
    outbox.log_metrics({"loss": 1.0}, step=1)
    outbox.log_artifact(figure_file, "plots")
    outbox.set_tags({"error": "KeyboardInterrupt"})
    outbox.end_run("KILLED")
    assert outbox.close(timeout_s=0) is False and client.status is None
    # a later process (python -m pipelines.tracking.outbox) finds all of it, status included
    later_client = _FlakyClient()
    later = TrackingOutbox("run", later_client, spool_dir=tmp_path)
    assert later.pending == 5 and later.close(timeout_s=0)
    assert later_client.events == ["batch", "batch", "batch", "artifact", "end"]
    assert later_client.params == {"lr": "0.01"} and later_client.tags == {
        "error": "KeyboardInterrupt"
    }
    assert later_client.metrics == [("loss", 1.0, 1)] and later_client.status == "KILLED"


def test_a_delivered_chunk_is_never_sent_again_after_a_later_failure(parts):
    outbox, client, _ = parts
    sent = []

    def fail_on_artifacts(run_id, local_path, artifact_path=None):
        raise ConnectionError("refused mid-way")

    client.log_artifact = fail_on_artifacts
    original = client.log_batch
    client.log_batch = lambda *args: (sent.append(args[1]), original(*args))
    outbox.artifacts[("x", None)] = __import__("pathlib").Path("x")
    outbox.log_metrics({"loss": 1.0}, step=1)
    outbox.log_metrics({"loss": 2.0}, step=2)
    outbox.flush(force=True)
    assert client.metrics == [("loss", 1.0, 1), ("loss", 2.0, 2)], "each point exactly once"


def test_other_threads_queue_without_sending_and_nothing_is_lost(parts):
    outbox, client, _ = parts

    def sampler(offset: int) -> None:
        for step in range(200):
            outbox.log_metrics({f"system/t{offset}": float(step)}, step, flush=False)

    threads = [threading.Thread(target=sampler, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for step in range(200):
        outbox.log_metrics({"loss": float(step)}, step)
    for thread in threads:
        thread.join()
    assert outbox.close(timeout_s=0)
    assert len(client.metrics) == 5 * 200 and len(set(client.metrics)) == 5 * 200


def test_a_chunk_the_store_refuses_for_good_is_dropped_reported_and_not_retried(parts, capsys):
    outbox, client, _ = parts
    original = client.log_batch

    def refuse_bad_names(run_id, metrics, params, tags):
        if any("@" in m.key for m in metrics):
            raise MlflowException("Invalid metric name: 'a@b'", INVALID_PARAMETER_VALUE)
        original(run_id, metrics, params, tags)

    client.log_batch = refuse_bad_names
    outbox.log_metrics({"a@b": 1.0}, step=1)
    outbox.log_metrics({"loss": 2.0}, step=2)
    assert outbox.pending == 0 and client.metrics == [("loss", 2.0, 2)]
    assert outbox.rejected == ["Invalid metric name: 'a@b'"] and outbox.failures == 0
    assert "tracking store rejected items of run run" in capsys.readouterr().err
