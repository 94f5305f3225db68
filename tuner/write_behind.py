"""A single-process study on an instant backend runs on an in-memory twin, written behind.

A simulator trial takes about a millisecond to price, but Optuna's RDB storage spends tens
of milliseconds writing one (an ORM round trip per parameter and attribute). So the study
runs on an in-memory twin, and its finished trials are copied to the durable storage (the
run directory's SQLite) in order, each once, by :class:`WriteBehind`:

- during the run, by one writer process, forked when the first trials finish, that opens
  its own connection once and stores what it is handed through a pipe: the copy runs on
  another core while the study goes on; it is handed, at most every ``interval_s``, what
  finished meanwhile, and takes it between two trials it stores. One process for the
  whole run, not one per batch: opening a connection and checking Optuna's schema costs
  a writer about as much as ten trials;
- at the end, :meth:`WriteBehind.flush_behind` hands it the rest while the run writes its
  outputs, and :meth:`WriteBehind.flush` (also when the run is interrupted) closes its
  pipe, waits for it and copies what is left itself, so every finished trial is stored
  when it returns.

The writer reports each trial it stored through a pipe. A writer that dies part way (a
killed run, a storage error) may have committed one trial it had no time to report, so
then the stored count is read back from the durable storage: the next copy (a new writer)
continues from the stored prefix, never storing a trial twice. A killed run loses at most
the trials not yet copied, which an instant backend prices again in milliseconds on
resume. Where fork is unavailable, or other threads are alive (a forked child could
inherit a lock one of them holds), or the storage has no URL to reopen, every copy is
made inline.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import select
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
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
        self._writer: _Writer | None = None

    def maybe_flush(self) -> None:
        """Hand the trials finished since the last call, every ``interval_s``, to the writer
        process where one can run (else copy them inline); returns at once."""
        if time.monotonic() - self._last < self.interval_s:
            return
        self._read_reports()
        pending = self._pending()
        if pending and not self._hand(pending):
            self._copy(pending)
        self._last = time.monotonic()

    def flush_behind(self) -> None:
        """Hand every finished trial not handed yet to the writer process, and return;
        :meth:`flush` then waits for it. The run writes its outputs meanwhile."""
        self._read_reports()
        pending = self._pending()
        if pending and not self._hand(pending):
            self._copy(pending)

    def flush(self) -> None:
        """Store every finished trial: wait for a running writer, then copy the rest here."""
        self._join_writer()
        self._copy(self._pending())
        self._last = time.monotonic()

    def _pending(self) -> list[FrozenTrial]:
        """Finished trials neither stored nor handed to the writer, in order, up to the
        first unfinished one."""
        out = []
        held = self._writer.held if self._writer is not None else 0
        for t in self.memory.get_trials(deepcopy=False)[self._flushed + held :]:
            if not t.state.is_finished():
                break
            out.append(t)
        return out

    def _copy(self, trials: list[FrozenTrial]) -> None:
        for t in trials:
            self.durable.add_trial(t)
            self._flushed += 1  # counted per trial: a failed add leaves the rest for the next copy

    def _hand(self, trials: list[FrozenTrial]) -> bool:
        """Hand ``trials`` to the writer, started now if there is none; False where no
        writer can run (copy inline). The writer takes them between two trials it stores,
        so a send waits at most for one trial's commit when its pipe is full."""
        if self._writer is None:
            if (
                self.url is None
                or "fork" not in multiprocessing.get_all_start_methods()
                or threading.active_count() > 1
            ):
                return False
            self._writer = _Writer.start(self.url, self.durable.study_name)
        self._writer.trials.send(trials)
        self._writer.held += len(trials)
        return True

    def _read_reports(self) -> None:
        """Count the trials the writer reported stored since the last call (a writer that
        exited is reaped)."""
        if self._writer is None:
            return
        self._writer.read_reports(block=False)
        if self._writer.exited:
            self._reap()
        else:
            self._flushed += self._writer.take_stored()

    def _join_writer(self) -> None:
        """Close the writer's pipe, wait for it to exit and count the trials it stored."""
        if self._writer is None:
            return
        self._writer.trials.close()  # EOF: the writer exits once it has stored what it holds
        while not self._writer.exited:
            self._writer.read_reports(block=True)
        self._reap()

    def _reap(self) -> None:
        """Join the exited writer and count the trials it stored: those it reported, or,
        when it died, those the durable storage holds."""
        assert self._writer is not None
        writer, self._writer = self._writer, None
        writer.close()
        if writer.process.exitcode == 0:
            self._flushed += writer.take_stored()
        else:  # killed between a commit and its report: count what was committed
            self._flushed = len(self.durable.get_trials(deepcopy=False)) - self._durable_extra


@dataclass
class _Writer:
    """The parent's handle on the writer process: the pipe it is handed trials through,
    the read end of its reports, and the trials it holds (handed, not yet counted as
    stored) and has reported stored."""

    process: BaseProcess
    trials: Connection
    reports: int
    held: int = 0
    stored: int = 0
    exited: bool = False

    @classmethod
    def start(cls, url: str, study_name: str) -> _Writer:
        ctx = multiprocessing.get_context("fork")
        theirs, ours = ctx.Pipe(duplex=False)
        read_end, write_end = os.pipe()
        process = ctx.Process(
            target=_write, args=(url, study_name, theirs, ours, read_end, write_end), daemon=True
        )
        process.start()
        theirs.close()
        os.close(write_end)
        return cls(process, ours, read_end)

    def read_reports(self, *, block: bool) -> None:
        """Count the writer's reports that arrived (waiting for one when ``block``); EOF
        means it exited, however it ended."""
        if not block and not select.select([self.reports], [], [], 0)[0]:
            return
        chunk = os.read(self.reports, 4096)
        if chunk:
            self.stored += len(chunk)
        else:
            self.process.join()
            self.exited = True

    def take_stored(self) -> int:
        """The trials stored since the last call (no longer held)."""
        n, self.stored = self.stored, 0
        self.held -= n
        return n

    def close(self) -> None:
        self.trials.close()
        os.close(self.reports)


def _write(
    url: str, study_name: str, trials: Connection, parent_end: Connection, report_read: int, report_fd: int
) -> None:
    """The writer process: store the trials it is handed, in order, through its own
    connection, one byte on ``report_fd`` per trial stored, until its pipe closes. Ctrl-C
    goes to the whole process group; the parent stops the run and waits for this copy, so
    the writer finishes it rather than dying."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent_end.close()  # so the pipe closes when the parent closes its end, however it ends
    os.close(report_read)
    study: optuna.Study | None = None
    queue: collections.deque[FrozenTrial] = collections.deque()
    closed = False
    while queue or not closed:
        try:  # take what was handed meanwhile; wait for more only when nothing is left
            while not closed and (not queue or trials.poll()):
                queue.extend(trials.recv())
        except EOFError:
            closed = True
            continue
        if study is None:  # connected once the first batch is read: its sender is not kept waiting
            study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        study.add_trial(queue.popleft())
        _report(report_fd)
    os.close(report_fd)


def _report(report_fd: int) -> None:
    """Tell the parent one more trial is stored (a process killed before this has stored
    a trial the parent was not told of)."""
    os.write(report_fd, b".")
