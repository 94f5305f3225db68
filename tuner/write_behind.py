"""A single-process study on an instant backend runs on an in-memory twin, written behind.

A simulator trial takes about a millisecond to price, but Optuna's RDB storage spends tens
of milliseconds writing one (an ORM round trip per parameter and attribute). So the study
runs on an in-memory twin, and its finished trials are copied to the durable storage (the
run directory's SQLite) in order, each once, by :class:`WriteBehind`:

- during the run, by a forked writer process that opens its own connection: the copy runs
  on another core while the study goes on; when a writer is done, the next one (at most one
  every ``interval_s``) takes what finished meanwhile;
- at the end, :meth:`WriteBehind.flush_behind` hands the rest to one more writer while the
  run writes its outputs, and :meth:`WriteBehind.flush` (also when the run is interrupted)
  waits for it and copies what is left itself, so every finished trial is stored when it
  returns.

The writer reports each trial it stored through a pipe. A writer that dies part way (a
killed run, a storage error) may have committed one trial it had no time to report, so
then the stored count is read back from the durable storage: the next copy continues from
the stored prefix, never storing a trial twice. A killed run loses at most the trials not yet copied, which an
instant backend prices again in milliseconds on resume. Where fork is unavailable, or other
threads are alive (a forked child could inherit a lock one of them holds), or the storage
has no URL to reopen, every copy is made inline.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess

import optuna
from optuna.trial import FrozenTrial

from .storage import open_storage

__all__ = ["WriteBehind"]


class WriteBehind:
    """An in-memory twin of ``durable`` that the study runs on; see the module docstring.

    The twin starts with every finished trial of the durable study, so samplers, duplicate
    detection and the trial budget see the whole history of a resumed run. ``url``: the
    durable storage's URL, which a writer process reopens (None: copies are made inline).
    """

    def __init__(self, durable: optuna.Study, *, url: str | None = None, interval_s: float = 0.2) -> None:
        self.durable = durable
        self.url = url
        self.interval_s = interval_s
        self.memory = optuna.create_study(
            directions=durable.directions, sampler=durable.sampler, study_name=durable.study_name
        )
        finished = [t for t in durable.get_trials(deepcopy=False) if t.state.is_finished()]
        self.memory.add_trials(finished)
        self._flushed = len(finished)
        # Durable trials the twin does not hold (unfinished ones of an earlier run): the
        # stored count minus these is the twin's stored prefix.
        self._durable_extra = len(durable.get_trials(deepcopy=False)) - len(finished)
        self._last = time.monotonic()
        self._writer: tuple[BaseProcess, int] | None = None  # (process, read end of its pipe)

    def maybe_flush(self) -> None:
        """Start copying the trials finished since the last copy, every ``interval_s``,
        in a writer process where one can run (else inline); returns at once."""
        if time.monotonic() - self._last < self.interval_s or self._writing():
            return
        pending = self._pending()
        if pending and not self._start_writer(pending):
            self._copy(pending)
        self._last = time.monotonic()

    def flush_behind(self) -> None:
        """Start copying every finished trial not stored yet in a writer process (after the
        running one, if any, is done), and return; :meth:`flush` then waits for it. The run
        writes its outputs meanwhile."""
        self._join_writer()
        pending = self._pending()
        if pending and not self._start_writer(pending):
            self._copy(pending)

    def flush(self) -> None:
        """Store every finished trial: wait for a running writer, then copy the rest here."""
        self._join_writer()
        self._copy(self._pending())
        self._last = time.monotonic()

    def _pending(self) -> list[FrozenTrial]:
        """Finished trials not stored yet, in order, up to the first unfinished one."""
        out = []
        for t in self.memory.get_trials(deepcopy=False)[self._flushed :]:
            if not t.state.is_finished():
                break
            out.append(t)
        return out

    def _copy(self, trials: list[FrozenTrial]) -> None:
        for t in trials:
            self.durable.add_trial(t)
            self._flushed += 1  # counted per trial: a failed add leaves the rest for the next copy

    def _start_writer(self, trials: list[FrozenTrial]) -> bool:
        if (
            self.url is None
            or "fork" not in multiprocessing.get_all_start_methods()
            or threading.active_count() > 1
        ):
            return False
        read_end, write_end = os.pipe()
        child = multiprocessing.get_context("fork").Process(
            target=_write, args=(self.url, self.durable.study_name, trials, write_end), daemon=True
        )
        child.start()
        os.close(write_end)
        self._writer = (child, read_end)
        return True

    def _writing(self) -> bool:
        """Whether a writer is still copying (a finished one is reaped)."""
        if self._writer is None:
            return False
        if self._writer[0].is_alive():
            return True
        self._join_writer()
        return False

    def _join_writer(self) -> None:
        """Wait for the writer and count the trials it stored: those it reported, or, when
        it died, those the durable storage holds."""
        if self._writer is None:
            return
        child, read_end = self._writer
        self._writer = None
        stored = 0
        with os.fdopen(read_end, "rb") as pipe:  # EOF when the child exits, however it ends
            while chunk := pipe.read(4096):
                stored += len(chunk)
        child.join()
        if child.exitcode == 0:
            self._flushed += stored
        else:  # killed between a commit and its report: count what was committed
            self._flushed = len(self.durable.get_trials(deepcopy=False)) - self._durable_extra


def _write(url: str, study_name: str, trials: list[FrozenTrial], report_fd: int) -> None:
    """The writer process: store ``trials`` in order through its own connection, one byte
    on ``report_fd`` per trial stored. Ctrl-C goes to the whole process group; the parent
    stops the run and waits for this copy, so the writer finishes it rather than dying."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    for t in trials:
        study.add_trial(t)
        _report(report_fd)
    os.close(report_fd)


def _report(report_fd: int) -> None:
    """Tell the parent one more trial is stored (a process killed before this has stored
    a trial the parent was not told of)."""
    os.write(report_fd, b".")
