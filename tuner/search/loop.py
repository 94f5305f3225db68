"""The one trial loop: ask (a proposer's deployment or the sampler's), decide, measure, tell.

Each trial's deployment and every load point are written to the trial's record
(:mod:`.record`) as soon as they exist, so a killed run loses nothing and a re-run resumes
the same study. Infeasible candidates are told PRUNED with their reason (never measured); a
candidate that fails is told FAIL with its reason; a deployment already measured is answered
from storage (:mod:`.decide`).

Several workers (processes, nodes) may run a loop on one study. Before measuring, a trial
claims its deployment (:class:`~tuner.storage.Claims`): a deployment another worker is
measuring is told PRUNED as ``busy``; one it measured is answered as a duplicate. With
:class:`~tuner.heartbeats.Heartbeats` every running trial beats, and each worker fails the
trials of dead workers, with the reason, before it asks (one retry is queued, which inherits
the points already measured and measures only the rest of the ladder). With a
:class:`~tuner.outages.StorageOutage` every storage call of the loop rides out a database
restart.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Literal, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from serving import Deployment, LoadPoint

from ..heartbeats import Heartbeats
from ..outages import StorageOutage
from ..slots import GpuSlots
from ..storage import Claims
from . import record
from .decide import decide, fail, tell_failed
from .outcome import Known, StudySummary, TrialOutcome, best_of
from .proposers import Proposer
from .task import Task

__all__ = ["ASK_LOST", "EXHAUSTED_AFTER", "EXPLORER", "POLL_S", "TrialLoop", "known_of"]

T = TypeVar("T")
OnTrial = Callable[[TrialOutcome, StudySummary], None]

#: Stop early when this many asks in a row brought nothing new (space exhausted).
EXHAUSTED_AFTER = 100
#: How often a worker with nothing to ask looks again (others' trials finishing or dying).
POLL_S = 0.5
#: Why a trial asked just before the storage failed is failed once it answers again.
ASK_LOST = "storage unreachable while the trial was asked"
#: The proposer whose trials are marked explored (:data:`record.EXPLORED_KEY`).
EXPLORER = "explore"


def known_of(study: optuna.Study) -> dict[str, Known]:
    """Measured deployments by key, from storage (so resumes and other workers count)."""
    out: dict[str, Known] = {}
    for r in record.records(study, (TrialState.COMPLETE,)):
        if r.measured and (dep := r.deployment) is not None:
            out[dep.key()] = Known(r.number, list(r.values), r.violation)
    return out


class TrialLoop:
    """The trials of one run on one study (several threads when ``slots`` place them).

    ``proposers``: asked in order before the sampler (:mod:`.proposers`). ``claims``: the
    study's claim table (shared studies). ``slots``: the worker's GPUs; with a backend that
    declares ``placed``, candidates then run concurrently on disjoint GPUs. ``heartbeats``:
    running trials beat, dead workers' trials are failed and retried (shared studies).
    ``outage``: storage calls ride out a database restart. ``distinct``: stop once this
    many different deployments are measured (the whole feasible space).
    """

    def __init__(
        self,
        study: optuna.Study,
        task: Task,
        *,
        proposers: Sequence[Proposer] = (),
        on_trial: OnTrial | None = None,
        distinct: int | None = None,
        claims: Claims | None = None,
        slots: GpuSlots | None = None,
        log_dir: str | None = None,
        heartbeats: Heartbeats | None = None,
        outage: StorageOutage | None = None,
    ) -> None:
        self.study, self.task = study, task
        self.proposers = tuple(proposers)
        self.on_trial, self.distinct = on_trial, distinct
        self.claims, self.log_dir = claims, log_dir
        self.slots = slots if slots is not None and task.backend.capabilities.placed else None
        self.heartbeats, self.outage = heartbeats, outage
        self.summary = StudySummary()
        self.known: dict[str, Known] = {}
        #: Trials this run asked with the explorer's choice (counted when measured).
        self.explored: set[int] = set()
        #: Trials being asked now (RUNNING before their first beat: not stale).
        self.asking: set[int] = set()
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.active: dict[int, tuple[optuna.Trial, Deployment, list[LoadPoint]]] = {}
        #: What ended a trial thread (re-raised by the caller): a storage given up on, a bug.
        self.errors: list[BaseException] = []

    def io(self, call: Callable[[], T]) -> T:
        """A storage call of the loop, riding out an outage when the run has a policy."""
        return call() if self.outage is None else self.outage.call(call)

    # -- the run -------------------------------------------------------------------------
    def run(self, n_trials: int) -> StudySummary:
        """Run trials until the study holds ``n_trials`` finished trials (a resume continues;
        other workers' trials count), or until ``distinct`` deployments are measured.
        Trials of other workers still running at the budget are waited for (one of them may
        die and be retried here, or be an orphan of an ask the storage dropped, failed here)."""
        for m in self.io(lambda: record.load_measured(self.study)):
            if self.task.sla.meets(m.point) and (
                self.summary.best is None or m.point.tok_s_gpu > self.summary.best.point.tok_s_gpu
            ):
                self.summary.best = m
        self.known = self.io(lambda: known_of(self.study))
        if self.slots is None:
            self._loop(n_trials)
            return self.summary
        threads = [
            threading.Thread(target=self._thread_loop, args=(n_trials,), daemon=True)
            for _ in range(self.slots.capacity)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=POLL_S)
        except KeyboardInterrupt:
            self.stop.set()
            with self.lock:
                for trial, dep, points in list(self.active.values()):
                    fail(self, trial, dep, "interrupted", points)
            raise
        if self.errors:
            raise self.errors[0]
        return self.summary

    def _thread_loop(self, n_trials: int) -> None:
        """:meth:`_loop` in a trial thread: what ends it stops the others and goes to the caller."""
        try:
            self._loop(n_trials)
        except BaseException as exc:  # re-raised by run() in the main thread
            with self.lock:
                self.errors.append(exc)
            self.stop.set()

    def _loop(self, n_trials: int) -> None:
        idle = 0
        while not self.stop.is_set():
            with self.lock:
                step = self.io(lambda: self._next_step(n_trials))
            if step == "done":
                return
            if step == "wait":
                time.sleep(POLL_S)
                continue
            outcome = self._one_trial()
            with self.lock:
                idle = idle + 1 if outcome.state in ("infeasible", "duplicate", "busy") else 0
                for proposer in self.proposers:
                    proposer.observe(outcome)
                if self.on_trial is not None:
                    self.on_trial(outcome, self.summary)
                if idle >= EXHAUSTED_AFTER or (
                    self.distinct is not None and len(self.known) >= self.distinct
                ):
                    self.summary.exhausted = True
                    self.stop.set()

    def _next_step(self, n_trials: int) -> Literal["ask", "wait", "done"]:
        """Ask while the budget is not in finished or running trials; a retry of a dead
        worker's trial is run even past it; otherwise wait while others' trials run (a dead
        worker's trial is failed after the heartbeats' grace, so the wait ends)."""
        study = self.study
        others: list[FrozenTrial] = []
        if self.heartbeats is not None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            mine = set(self.active) | self.asking
            others = [t for t in running if t.number not in mine]
            failed = self.heartbeats.fail_stale(study, others)
            others = [t for t in others if t.number not in failed]
        counts = Counter(t.state for t in study.get_trials(deepcopy=False))
        finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + counts[TrialState.FAIL]
        if finished + counts[TrialState.RUNNING] < n_trials:
            return "ask"
        if counts[TrialState.WAITING] and any(
            "failed_trial" in t.system_attrs
            for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        ):
            return "ask"
        if self.heartbeats is None or (finished >= n_trials and not others):
            return "done"
        # Others' trials still running, even past the budget: a trial asked as the storage
        # connection dropped has no worker, and is failed once its grace is over.
        return "wait"

    # -- one trial -----------------------------------------------------------------------
    def _one_trial(self) -> TrialOutcome:
        trial, dep = self._ask()
        with self.heartbeats.beating(trial.number) if self.heartbeats is not None else nullcontext():
            return decide(self, trial, dep)

    def _propose(self) -> tuple[Proposer, Deployment] | None:
        """The first proposal of the proposers, unless a trial is queued already (a dead
        worker's retry is asked first: a proposal would be left WAITING at the budget)."""
        if not self.proposers or self.io(lambda: _waiting(self.study)):
            return None
        for proposer in self.proposers:
            dep = proposer.propose(self.known.keys())
            if dep is not None:
                return proposer, dep
        return None

    def _ask(self) -> tuple[optuna.Trial, Deployment]:
        """Ask, riding out an outage; a trial asked before the storage failed (its parameters
        half written) is failed with the reason once the storage answers again."""
        with self.lock:
            proposal = self._propose()
            if proposal is not None:
                params = self.task.space.params(proposal[1])
                self.io(lambda: self.study.enqueue_trial(params, skip_if_exists=False))
            asked: list[optuna.Trial] = []

            def ask() -> tuple[optuna.Trial, Deployment]:
                asked.append(self.study.ask())
                self.asking.add(asked[-1].number)
                return asked[-1], self.task.space.suggest(asked[-1], self.task.problem)

            try:
                trial, dep = self.io(ask)
            finally:
                self.asking.difference_update(t.number for t in asked)
            for orphan in asked[:-1]:
                self.io(lambda t=orphan: tell_failed(self, t, ASK_LOST))  # type: ignore[misc]
                self.summary.failed.append(ASK_LOST)
            if proposal is not None and proposal[0].name == EXPLORER and dep == proposal[1]:
                # Another worker may have taken the queued trial: marked only when it is ours.
                self.io(lambda: record.mark_explored(trial, dep.family()))
                self.explored.add(trial.number)
            return trial, dep

    def measured_one(self, number: int, dep: Deployment, points: list[LoadPoint], known: Known) -> None:
        """Count a trial this run measured (under the lock)."""
        self.known[dep.key()] = known
        self.summary.measured += 1
        self.summary.explored += number in self.explored
        self.summary.best = best_of(number, dep, points, self.task.sla, self.summary.best)


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
