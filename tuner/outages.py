"""Riding out a storage outage during a run: one place that retries the study loop's
storage calls while the database is unreachable, for a bounded time.

A database restart (PostgreSQL: a few seconds; a managed failover: up to about a minute)
drops every connection and refuses new ones until the server accepts them again. Each
storage call of the trial loop goes through :meth:`StorageOutage.call`: a transient error
(:func:`tuner.storage.classify`) is retried with exponential backoff until the storage
answers again or ``budget_s`` has passed since the first error of the outage; then one
:class:`~tuner.errors.StorageError` line says how long it was unreachable.

The calls retried are idempotent or made so by their caller: attribute writes are
upserts, ``tell`` skips a trial already finished (a retry of a tell that committed), and
a claim recognises its own row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import StorageError
from .storage import classify, redact, storage_exceptions

__all__ = ["OUTAGE_S", "StorageOutage"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Default time a worker waits for an unreachable storage before it gives up: a PostgreSQL
#: restart takes 2-10 s; a managed database's failover 30-60 s (RDS Multi-AZ documents
#: 60-120 s, Cloud SQL about 60 s); 60 s covers a restart with margin and keeps a real
#: outage from hanging a worker for long.
OUTAGE_S = 60.0
#: First backoff, doubled after each failed retry up to MAX_DELAY_S: a restart that takes
#: 10 s is noticed within about 5 s of its end, with about a dozen tries.
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 5.0


class StorageOutage:
    """Retries transient storage errors of ``url`` for up to ``budget_s`` per outage.

    Thread-safe: the trial threads of one worker share it. ``on_recover`` runs once when
    the storage answers again after an outage (the heartbeats start observing afresh).
    The counters (``outages``, ``retries``, ``down_s``) are for the closing log line and
    for tests.
    """

    def __init__(
        self, url: str, *, budget_s: float = OUTAGE_S, on_recover: Callable[[], None] | None = None
    ) -> None:
        if budget_s < 0:
            raise ValueError(f"budget_s must be >= 0, got {budget_s}")
        self.url = url
        self.budget_s = budget_s
        self.on_recover = on_recover
        self.outages = 0
        self.retries = 0
        self.down_s = 0.0
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried while the storage is unreachable; :class:`StorageError` after
        ``budget_s``; a permanent error (wrong password, disk full) is raised at once."""
        delay = FIRST_DELAY_S
        first: float | None = None
        while True:
            try:
                result = fn()
            except storage_exceptions() as exc:
                transient, message = classify(exc)
                if not transient:
                    raise
                now = time.monotonic()
                first = now if first is None else first
                self._noticed(now, message)
                waited = now - first
                if waited >= self.budget_s:
                    raise StorageError(
                        f"storage {redact(self.url)}: unreachable for {waited:.0f} s ({message}); giving up"
                    ) from exc
                time.sleep(min(delay, self.budget_s - waited))
                delay = min(2 * delay, MAX_DELAY_S)
                with self._lock:
                    self.retries += 1
                continue
            if first is not None:
                self._recovered()
            return result

    def _noticed(self, now: float, message: str) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = now
            self.outages += 1
        log.warning("storage %s: %s; retrying for up to %.0f s", redact(self.url), message, self.budget_s)

    def _recovered(self) -> None:
        with self._lock:
            if self._down_since is None:  # another thread saw the recovery first
                return
            down = time.monotonic() - self._down_since
            self._down_since = None
            self.down_s += down
            retries = self.retries
        log.warning(
            "storage %s: reachable again after %.1f s (%d retries so far)", redact(self.url), down, retries
        )
        if self.on_recover is not None:
            self.on_recover()
