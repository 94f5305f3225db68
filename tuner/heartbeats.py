"""Liveness of running trials in a shared study: heartbeats, and failing (with the reason)
and retrying the trials of workers that died.

Each running trial's worker bumps a counter in a table of the study's own database
(``tuner_heartbeats``: study, trial number, beats) every ``interval_s``, from a thread that
survives storage errors (a missed beat during a database restart is no death). Every worker
looks before it asks: a RUNNING trial whose counter has not moved for ``grace_s`` of the
looker's own time -- or that never beat at all (its worker died between ask and first
beat) -- is failed with ``fail_reason`` "worker died: no heartbeat for N s" and queued
again once, keeping its deployment and the points it stored (the retry measures only the
rest of the ladder).

Staleness is judged by watching the counter, not by comparing clocks: nodes may disagree
on the time, and a trial that never beat has no time to compare. A looker that itself rode
out an outage (:class:`tuner.outages.StorageOutage`) starts watching afresh, so the trials
of workers that rode out the same outage get ``grace_s`` to beat again.

Optuna's own heartbeat (``RDBStorage(heartbeat_interval=...)``) is not used: its stale check
skips trials that never beat, its failure stores no reason, and its beat thread dies with
the first storage error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from .search import record
from .storage import GRACE_FACTOR, HEARTBEAT_S, classify, storage_exceptions

__all__ = ["FAIL_REASON_ATTR", "Heartbeats", "fail_and_retry"]

log = logging.getLogger(__name__)

#: User attribute holding why a trial failed (every FAIL trial has one).
FAIL_REASON_ATTR = record.FAIL_REASON_KEY


def fail_and_retry(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    trial: FrozenTrial,
    reason: str,
    *,
    max_retry: int | None = 1,
) -> bool:
    """Fail the RUNNING ``trial`` with ``reason`` and queue one retry (at most ``max_retry``
    along its history, as :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` counts;
    None: always).

    False when the trial was finished meanwhile (its worker told it, or another looker
    failed it first): then nothing is queued, so exactly one retry exists.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    try:
        record.set_fail_reason_in(storage, trial_id, reason)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retry is not None and len(history) > max_retry:
        return True
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=record.inherited(trial),
            system_attrs={"failed_trial": history[0], "retry_history": history},
        )
    )
    return True


class Heartbeats:
    """The heartbeat table of one study in an RDB storage; see the module docstring."""

    def __init__(
        self,
        storage: RDBStorage,
        study_id: int,
        *,
        interval_s: float = HEARTBEAT_S,
        grace_s: float | None = None,
    ) -> None:
        from sqlalchemy import Column, Integer, MetaData, Table

        if interval_s <= 0:
            raise ValueError(f"heartbeat interval must be > 0 s, got {interval_s}")
        self.storage = storage
        self.study_id = study_id
        self.interval_s = interval_s
        self.grace_s = GRACE_FACTOR * interval_s if grace_s is None else grace_s
        self._table = Table(
            "tuner_heartbeats",
            MetaData(),
            Column("study_id", Integer, primary_key=True),
            Column("number", Integer, primary_key=True),
            Column("beats", Integer, nullable=False),
        )
        #: trial number -> (beats last seen, None when no row; monotonic time first seen).
        self._seen: dict[int, tuple[int | None, float]] = {}
        self._lock = threading.Lock()
        self._create()

    def _create(self) -> None:
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        # IntegrityError/ProgrammingError: created by a concurrent worker meanwhile.
        with contextlib.suppress(IntegrityError, ProgrammingError):
            self._table.create(self.storage.engine, checkfirst=True)

    def beat(self, number: int) -> None:
        """One beat for trial ``number`` (an update, or the first row)."""
        from sqlalchemy import insert, update
        from sqlalchemy.exc import IntegrityError

        t = self._table
        where = (t.c.study_id == self.study_id) & (t.c.number == number)
        with self.storage.engine.begin() as conn:
            if conn.execute(update(t).where(where).values(beats=t.c.beats + 1)).rowcount:
                return
        with contextlib.suppress(IntegrityError), self.storage.engine.begin() as conn:
            conn.execute(insert(t).values(study_id=self.study_id, number=number, beats=1))

    @contextmanager
    def beating(self, number: int) -> Iterator[None]:
        """Beat for trial ``number`` every ``interval_s`` while inside."""
        stop = threading.Event()
        thread = threading.Thread(target=self._beat_until, args=(number, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def _beat_until(self, number: int, stop: threading.Event) -> None:
        while True:
            try:
                self.beat(number)
            except storage_exceptions() as exc:  # a lost beat; the worker's calls ride it out
                log.debug("trial %d: heartbeat not recorded: %s", number, classify(exc)[1])
            if stop.wait(self.interval_s):
                return

    def forget(self) -> None:
        """Start watching afresh (after this process rode out an outage)."""
        with self._lock:
            self._seen.clear()

    def stale(self, running: list[FrozenTrial]) -> list[FrozenTrial]:
        """The trials of ``running`` whose beat has not moved for ``grace_s``."""
        from sqlalchemy import select

        t = self._table
        numbers = [tr.number for tr in running]
        with self.storage.engine.begin() as conn:
            rows = conn.execute(
                select(t.c.number, t.c.beats).where((t.c.study_id == self.study_id) & t.c.number.in_(numbers))
            ).all()
        beats = {int(n): int(b) for n, b in rows}
        now = time.monotonic()
        out = []
        with self._lock:
            self._seen = {n: seen for n, seen in self._seen.items() if n in numbers}
            for tr in running:
                current, seen = beats.get(tr.number), self._seen.get(tr.number)
                if seen is None or seen[0] != current:
                    self._seen[tr.number] = (current, now)
                elif now - seen[1] >= self.grace_s:
                    out.append(tr)
        return out

    def fail_stale(self, study: optuna.Study, running: list[FrozenTrial]) -> list[int]:
        """Fail and retry the stale trials of ``running``; the numbers of those failed here."""
        failed = []
        for tr in self.stale(running):
            reason = f"worker died: no heartbeat for {self.grace_s:.0f} s"
            if fail_and_retry(study, self.storage, tr, reason):
                log.info("trial %d: %s; failed and queued again", tr.number, reason)
                failed.append(tr.number)
            with self._lock:
                self._seen.pop(tr.number, None)
        return failed
