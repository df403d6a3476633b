"""Trial heartbeats on every Optuna storage: a worker killed mid-trial does not leak its trial.

Optuna's own heartbeat exists only for RDB storages (``JournalStorage`` does not implement
``BaseHeartbeat``). For a journal file, the worker running a trial refreshes a timestamp in the
trial's system attributes from a background thread every ``interval`` seconds; any worker
(live, or started later) fails a RUNNING trial whose timestamp is older than ``2 x interval``
and queues its parameters again, exactly as the RDB path does with
``RetryFailedTrialCallback``. Failing goes through the storage's state change, which a second
worker racing for the same trial loses with ``UpdateFinishedTrialError``, so a trial is failed
and retried once.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RetryFailedTrialCallback
from optuna.trial import TrialState

HEARTBEAT_ATTR = "ntmlab_heartbeat"
GRACE_INTERVALS = 2


class JournalHeartbeat:
    """Keeps one trial's heartbeat fresh while its worker lives (a no-op on an RDB storage,
    whose own heartbeat Optuna runs)."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval_s: float) -> None:
        self.storage, self.trial_id, self.interval_s = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat()
            except UpdateFinishedTrialError:
                return  # the trial ended (or another worker judged it dead)

    def __enter__(self) -> JournalHeartbeat:
        if isinstance(self.storage, JournalStorage):
            self._beat()
            self._thread = threading.Thread(target=self._run, name="trial-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def fail_stale_trials(
    study: optuna.Study, storage: BaseStorage, interval_s: float, max_retry: int
) -> list[int]:
    """Fail the RUNNING trials whose worker stopped beating, queue their parameters again, and
    return their numbers. On an RDB storage this is Optuna's own ``fail_stale_trials``."""
    if not isinstance(storage, JournalStorage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        return sorted(after - before)
    grace = GRACE_INTERVALS * interval_s
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if now - trial.system_attrs.get(HEARTBEAT_ATTR, started) <= grace:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker failed it first
        RetryFailedTrialCallback(max_retry)(study, storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed
