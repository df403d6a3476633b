"""tracked_run's local directories: a run several processes hold open at once (an HPO study's
parent) gives each process a spool of its own, and each removes only its own."""

from __future__ import annotations

from pipelines.tracking.outbox import WORKER_SPOOLS, TrackingOutbox
from pipelines.tracking.outbox import main as outbox_main
from pipelines.tracking.runs import tracked_run, worker_spool_dir
from pipelines.tracking.store import run_dir


class _DownTransport:
    """A tracking server that is away: everything is spooled."""

    tracking_uri = "http://away"

    def __getattr__(self, name):
        def refuse(*args, **kwargs):
            raise ConnectionError("connection refused")

        return refuse


def test_a_shared_run_keeps_each_process_spool_apart_and_removes_only_its_own(client):
    with tracked_run("shared", "parent", shared=True) as first:
        run_id = first.run_id
        other = run_dir(run_id) / WORKER_SPOOLS / "otherhost-1"  # another worker, still running
        (other / "files").mkdir(parents=True)
        (other / "files" / "figure.png").write_bytes(b"png")
        assert first.outbox.spool_dir == worker_spool_dir(run_id) != other
        first.outbox.log_text("hello", "notes/a.md")
    assert (other / "files" / "figure.png").read_bytes() == b"png", "the other's file is intact"
    assert not worker_spool_dir(run_id).exists(), "this process cleaned up after itself"
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/a.md"]


def test_the_upload_command_delivers_every_worker_spool_of_a_run(client):
    with tracked_run("shared", "parent", shared=True) as run:
        run_id = run.run_id
    for worker in ("a-1", "b-2"):  # two workers that ended during an outage
        spool = run_dir(run_id) / WORKER_SPOOLS / worker
        outbox = TrackingOutbox(run_id, _DownTransport(), spool_dir=spool)
        outbox.log_metrics({f"from_{worker[0]}": 1.0}, step=0)
        assert outbox.pending and (spool / "pending_metrics.jsonl").is_file()
    assert outbox_main([run_id, "--timeout_s", "10"]) == 0
    assert {"from_a", "from_b"} <= set(client.get_run(run_id).data.metrics)
