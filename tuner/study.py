"""The Optuna study over deployments: ask, check, measure, tell, with durable storage.

Each trial's deployment and every load point are written to the trial's user attributes as
soon as they exist, so a killed run loses nothing and a re-run resumes the same study.
Infeasible candidates are told PRUNED with their reason (never measured); a candidate that
fails is told FAIL with its reason; a deployment already measured is answered from storage.

Several workers (processes, nodes) may run :func:`run_trials` on one study. Before measuring,
a trial claims its deployment (:class:`~tuner.storage.Claims`): a deployment another worker
is measuring is told PRUNED as ``busy``; one it measured is answered as a duplicate. With
:class:`~tuner.heartbeats.Heartbeats` every running trial beats, and each worker fails the
trials of dead workers, with the reason, before it asks (one retry is queued, which inherits
the points already measured and measures only the rest of the ladder). With a
:class:`~tuner.outages.StorageOutage` every storage call of the loop rides out a database
restart. Every FAIL trial stores its reason (``fail_reason``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from backends import Backend
from backends.base import MeasureContext
from search_spaces import SearchSpace, infeasible_reason
from serving import CandidateFailed, Deployment, LoadPoint, Problem

from .errors import StorageError
from .explore import Explorer
from .heartbeats import FAIL_REASON_ATTR, Heartbeats
from .objectives import get_objective
from .outages import StorageOutage
from .results import MeasuredPoint
from .samplers import CONSTRAINT_ATTR
from .sla import SLA
from .slots import GpuSlots
from .storage import Claims

__all__ = [
    "EXPLORED_ATTR",
    "POINTS_ATTR",
    "StudySummary",
    "TrialOutcome",
    "load_measured",
    "objective_values",
    "run_trials",
    "summarize",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: User attribute holding a trial's load points (a list of LoadPoint dicts).
POINTS_ATTR = "points"
#: Stop early when this many asks in a row brought nothing new (space exhausted).
EXHAUSTED_AFTER = 100
#: User attribute of a trial the explorer chose (tuner/explore.py): the family it explores.
EXPLORED_ATTR = "explored_family"
#: How often a worker with nothing to ask looks again (others' trials finishing or dying).
POLL_S = 0.5
#: Why a trial asked just before the storage failed is failed once it answers again.
ASK_LOST = "storage unreachable while the trial was asked"


@dataclass(frozen=True)
class TrialOutcome:
    """What happened to one trial, for progress display."""

    number: int
    state: Literal["measured", "infeasible", "duplicate", "failed", "busy"]
    deployment: Deployment | None
    reason: str | None = None
    points: tuple[LoadPoint, ...] = ()


@dataclass
class StudySummary:
    """Counts of one run of :func:`run_trials` plus the best SLA-feasible point so far."""

    measured: int = 0
    #: Of the measured: chosen by the explorer (tuner/explore.py), not by the sampler.
    explored: int = 0
    duplicates: int = 0
    busy: int = 0
    infeasible: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    best: MeasuredPoint | None = None
    exhausted: bool = False

    @property
    def trials(self) -> int:
        return self.measured + self.duplicates + self.busy + sum(self.infeasible.values()) + len(self.failed)


def objective_values(points: list[LoadPoint], sla: SLA, objective: str) -> tuple[list[float], float]:
    """Trial values and SLA violation of the registered ``objective``
    (:data:`tuner.objectives.OBJECTIVES`: ``sla``, ``front``, ``cost``)."""
    return get_objective(objective).values(points, sla)


def _trial_points(trial: FrozenTrial) -> list[LoadPoint]:
    return [LoadPoint.from_dict(p) for p in trial.user_attrs.get(POINTS_ATTR, [])]


def load_measured(study: optuna.Study) -> list[MeasuredPoint]:
    """Every load point of every completed, measured trial (duplicates carry none)."""
    out: list[MeasuredPoint] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "deployment" not in t.user_attrs or "duplicate_of" in t.user_attrs:
            continue
        dep = Deployment.from_dict(t.user_attrs["deployment"])
        out.extend(MeasuredPoint(t.number, dep, p) for p in _trial_points(t))
    return out


def summarize(study: optuna.Study, sla: SLA | None = None) -> StudySummary:
    """The counts of a whole study from storage (every worker's trials), for ``tuner status``
    and for a run whose trials other processes ran."""
    summary = StudySummary()
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if t.state == TrialState.COMPLETE:
            if "duplicate_of" in attrs:
                summary.duplicates += 1
            else:
                summary.measured += 1
                summary.explored += EXPLORED_ATTR in attrs
                if sla is not None and "deployment" in attrs:
                    dep = Deployment.from_dict(attrs["deployment"])
                    summary.best = _best_of(t.number, dep, _trial_points(t), sla, summary.best)
        elif t.state == TrialState.PRUNED:
            if "busy" in attrs:
                summary.busy += 1
            else:
                summary.infeasible[str(attrs.get("infeasible", "unknown")).split(":", 1)[0]] += 1
        elif t.state == TrialState.FAIL:
            summary.failed.append(str(attrs.get(FAIL_REASON_ATTR, "worker died (no heartbeat)")))
    return summary


@dataclass(frozen=True)
class _Known:
    number: int
    values: list[float]
    violation: float


def _known(study: optuna.Study) -> dict[str, _Known]:
    """Measured deployments by key, from storage (so resumes and other workers count)."""
    out: dict[str, _Known] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "deployment" in t.user_attrs and "duplicate_of" not in t.user_attrs:
            key = Deployment.from_dict(t.user_attrs["deployment"]).key()
            out[key] = _Known(t.number, list(t.values), float(t.user_attrs.get(CONSTRAINT_ATTR, 0.0)))
    return out


def _best_of(
    trial_number: int, dep: Deployment, points: list[LoadPoint], sla: SLA, best: MeasuredPoint | None
) -> MeasuredPoint | None:
    for p in points:
        if sla.meets(p) and (best is None or p.tok_s_gpu > best.point.tok_s_gpu):
            best = MeasuredPoint(trial_number, dep, p)
    return best


@dataclass
class _Run:
    """What the trials of one :func:`run_trials` call share (its threads, with ``slots``)."""

    study: optuna.Study
    space: SearchSpace
    backend: Backend
    problem: Problem
    sla: SLA
    objective: str
    known: dict[str, _Known]
    summary: StudySummary
    claims: Claims | None
    slots: GpuSlots | None
    log_dir: str | None = None
    explorer: Explorer | None = None
    heartbeats: Heartbeats | None = None
    outage: StorageOutage | None = None
    #: The explorer's choice for the next ask (queued only then: a run that stops first
    #: leaves nothing WAITING in a shared study).
    explore_next: Deployment | None = None
    #: Trials this run asked with the explorer's choice (counted in the summary when measured).
    explored: set[int] = field(default_factory=set)
    #: Trials being asked now (RUNNING before their first beat: not stale).
    asking: set[int] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)
    stop: threading.Event = field(default_factory=threading.Event)
    active: dict[int, tuple[optuna.Trial, Deployment, list[LoadPoint]]] = field(default_factory=dict)
    #: What ended a trial thread (re-raised by the caller): a storage given up on, a bug.
    errors: list[BaseException] = field(default_factory=list)

    def io(self, call: Callable[[], T]) -> T:
        """A storage call of the loop, riding out an outage when the run has a policy."""
        return call() if self.outage is None else self.outage.call(call)


def run_trials(
    study: optuna.Study,
    *,
    space: SearchSpace,
    backend: Backend,
    problem: Problem,
    sla: SLA,
    objective: str,
    n_trials: int,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None = None,
    distinct: int | None = None,
    claims: Claims | None = None,
    slots: GpuSlots | None = None,
    log_dir: str | None = None,
    explorer: Explorer | None = None,
    heartbeats: Heartbeats | None = None,
    outage: StorageOutage | None = None,
) -> StudySummary:
    """Run trials until the study holds ``n_trials`` finished trials (a resume continues;
    other workers' trials count), or until ``distinct`` different deployments are measured
    (the whole feasible space, when a screening counted it).

    ``claims``: the study's claim table (shared studies; see the module docstring).
    ``slots``: the worker's GPUs; with a backend that accepts a
    :class:`~backends.base.MeasureContext`, candidates then run concurrently on disjoint GPUs.
    Trials of other workers still running when the budget is reached are waited for (one of
    them may die and be retried here).
    ``explorer``: after the sampler re-proposes measured deployments, queue an unmeasured one
    of the least-measured family (:mod:`tuner.explore`).
    ``heartbeats``: running trials beat, dead workers' trials are failed and retried (shared
    studies). ``outage``: storage calls ride out a database restart.
    """
    summary = StudySummary()
    measured = load_measured(study) if outage is None else outage.call(lambda: load_measured(study))
    for m in measured:
        if sla.meets(m.point) and (summary.best is None or m.point.tok_s_gpu > summary.best.point.tok_s_gpu):
            summary.best = m
    run = _Run(
        study,
        space,
        backend,
        problem,
        sla,
        objective,
        {},
        summary,
        claims,
        slots if slots is not None and backend.capabilities.placed else None,
        log_dir,
        explorer,
        heartbeats,
        outage,
    )
    run.known = run.io(lambda: _known(study))
    if run.slots is None:
        _loop(run, n_trials, on_trial, distinct)
        return summary
    threads = [
        threading.Thread(target=_thread_loop, args=(run, n_trials, on_trial, distinct), daemon=True)
        for _ in range(run.slots.capacity)
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=POLL_S)
    except KeyboardInterrupt:
        run.stop.set()
        with run.lock:
            for trial, dep, points in list(run.active.values()):
                _fail(run, trial, dep, "interrupted", points)
        raise
    if run.errors:
        raise run.errors[0]
    return summary


def _thread_loop(
    run: _Run,
    n_trials: int,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None,
    distinct: int | None,
) -> None:
    """:func:`_loop` in a trial thread: what ends it stops the others and goes to the caller."""
    try:
        _loop(run, n_trials, on_trial, distinct)
    except BaseException as exc:  # re-raised by run_trials in the main thread
        with run.lock:
            run.errors.append(exc)
        run.stop.set()


def _loop(
    run: _Run,
    n_trials: int,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None,
    distinct: int | None,
) -> None:
    idle = 0
    while not run.stop.is_set():
        with run.lock:
            step = run.io(lambda: _next_step(run, n_trials))
        if step == "done":
            return
        if step == "wait":
            time.sleep(POLL_S)
            continue
        outcome = _one_trial(run)
        with run.lock:
            idle = idle + 1 if outcome.state in ("infeasible", "duplicate", "busy") else 0
            if run.explorer is not None and run.explorer.due(outcome.state):
                run.explore_next = run.explorer.choose(run.known)
            if on_trial is not None:
                on_trial(outcome, run.summary)
            if idle >= EXHAUSTED_AFTER or (distinct is not None and len(run.known) >= distinct):
                run.summary.exhausted = True
                run.stop.set()


def _next_step(run: _Run, n_trials: int) -> Literal["ask", "wait", "done"]:
    """Ask while the budget is not in finished or running trials; a retry of a dead
    worker's trial is run even past it; otherwise wait while others' trials run (a dead
    worker's trial is failed after the heartbeats' grace, so the wait ends)."""
    study, heartbeat = run.study, run.heartbeats is not None
    if run.heartbeats is not None:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        mine = set(run.active) | run.asking
        run.heartbeats.fail_stale(study, [t for t in running if t.number not in mine])
    counts = Counter(t.state for t in study.get_trials(deepcopy=False))
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + counts[TrialState.FAIL]
    if finished + counts[TrialState.RUNNING] < n_trials:
        return "ask"
    if counts[TrialState.WAITING] and any(
        "failed_trial" in t.system_attrs
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    ):
        return "ask"
    if finished >= n_trials or not heartbeat:
        return "done"
    return "wait"


def _ask(run: _Run) -> tuple[optuna.Trial, Deployment]:
    """Ask, riding out an outage; a trial asked before the storage failed (its parameters
    half written) is failed with the reason once the storage answers again."""
    with run.lock:
        explore, run.explore_next = run.explore_next, None
        if explore is not None and run.io(lambda: _waiting(run.study)):
            # A queued trial (a dead worker's retry) is asked first; exploring waits for it,
            # or the explorer's trial would be left WAITING when the budget ends.
            run.explore_next, explore = explore, None
        if explore is not None:
            run.io(lambda: run.study.enqueue_trial(run.space.params(explore), skip_if_exists=False))
        asked: list[optuna.Trial] = []

        def ask() -> tuple[optuna.Trial, Deployment]:
            asked.append(run.study.ask())
            run.asking.add(asked[-1].number)
            return asked[-1], run.space.suggest(asked[-1], run.problem)

        try:
            trial, dep = run.io(ask)
        finally:
            run.asking.difference_update(t.number for t in asked)
        for orphan in asked[:-1]:
            run.io(lambda t=orphan: _tell_failed(run, t, ASK_LOST))  # type: ignore[misc]
            run.summary.failed.append(ASK_LOST)
        if explore is not None and dep == explore:  # another worker may have taken it
            run.io(lambda: trial.set_user_attr(EXPLORED_ATTR, dep.family()))
            run.explored.add(trial.number)
        return trial, dep


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _one_trial(run: _Run) -> TrialOutcome:
    trial, dep = _ask(run)
    with run.heartbeats.beating(trial.number) if run.heartbeats is not None else nullcontext():
        return _decide(run, trial, dep)


def _decide(run: _Run, trial: optuna.Trial, dep: Deployment) -> TrialOutcome:
    key = dep.key()

    def describe() -> None:
        trial.set_user_attr("deployment", dep.to_dict())
        trial.set_user_attr("label", dep.label())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # for `tuner status`

    run.io(describe)
    reason = infeasible_reason(dep, run.problem) or run.backend.check(dep, run.problem)
    if reason is not None:
        run.io(lambda: trial.set_user_attr("infeasible", reason))
        run.io(lambda: run.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True))
        with run.lock:
            run.summary.infeasible[reason.split(":", 1)[0]] += 1
        return TrialOutcome(trial.number, "infeasible", dep, reason)
    with run.lock:
        prior = run.known.get(key)
    if prior is None and (claims := run.claims) is not None:
        holder_id = run.io(lambda: claims.claim(key, claims.trial_id(trial.number)))
        if holder_id is not None:
            holder = run.io(lambda: claims.holder(holder_id))
            if holder.state != TrialState.COMPLETE:
                return _busy(run, trial, dep, holder.number)
            prior = _Known(
                holder.number, list(holder.values), float(holder.user_attrs.get(CONSTRAINT_ATTR, 0.0))
            )
            with run.lock:
                run.known[key] = prior
    if prior is not None:
        known = prior
        run.io(lambda: trial.set_user_attr("duplicate_of", known.number))
        run.io(lambda: _set_violation(trial, known.violation))
        run.io(lambda: run.study.tell(trial, known.values, skip_if_finished=True))
        with run.lock:
            run.summary.duplicates += 1
        return TrialOutcome(trial.number, "duplicate", dep, f"same as trial {prior.number}")
    return _measure(run, trial, dep, key)


def _busy(run: _Run, trial: optuna.Trial, dep: Deployment, holder: int) -> TrialOutcome:
    """Another worker is measuring this deployment: give the trial up (PRUNED, with why)."""
    reason = f"busy: trial {holder} is measuring it"
    run.io(lambda: trial.set_user_attr("busy", reason))
    run.io(lambda: run.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True))
    with run.lock:
        run.summary.busy += 1
    return TrialOutcome(trial.number, "busy", dep, reason)


def _measure(run: _Run, trial: optuna.Trial, dep: Deployment, key: str) -> TrialOutcome:
    # A retry of a dead worker's trial inherits the points it stored: measure only the rest.
    points = [LoadPoint.from_dict(p) for p in trial.user_attrs.get(POINTS_ATTR, [])]
    ladder = run.problem.workload.load_keys  # concurrencies, or arrival rates (open loop)
    rest = tuple(c for c in ladder if c not in {p.load_key for p in points})
    problem = run.problem
    if points:
        run.io(lambda: trial.set_user_attr("resumed_points", len(points)))
        problem = dataclasses.replace(problem, workload=problem.workload.with_load_keys(rest))

    instant = run.backend.capabilities.instant

    def store(point: LoadPoint) -> None:
        # The whole list so far, rewritten per point: a killed run keeps every point. An
        # instant backend's points cost microseconds: written once, with the result.
        points.append(point)
        if not instant:
            stored = [p.to_dict() for p in points]
            run.io(lambda: trial.set_user_attr(POINTS_ATTR, stored))

    with run.lock:
        run.active[trial.number] = (trial, dep, points)
    try:
        if rest:
            _call_backend(run, trial, dep, problem, store)
    except CandidateFailed as exc:
        return _fail(run, trial, dep, exc.reason, points)
    except KeyboardInterrupt:
        _fail(run, trial, dep, "interrupted", points)
        raise
    except StorageError:  # given up on the storage: the trial's fate is for the heartbeats
        raise
    except Exception as exc:  # a backend bug must not end the study: record it as data
        log.exception("trial %d: backend error", trial.number)
        return _fail(run, trial, dep, f"backend error: {type(exc).__name__}: {exc}", points)
    finally:
        with run.lock:
            run.active.pop(trial.number, None)
    if not points:
        return _fail(run, trial, dep, "backend returned no load points", points)
    points.sort(key=lambda p: ladder.index(p.load_key) if p.load_key in ladder else len(ladder))
    if instant:
        run.io(lambda: trial.set_user_attr(POINTS_ATTR, [p.to_dict() for p in points]))
    values, violation = objective_values(points, run.sla, run.objective)
    run.io(lambda: _set_violation(trial, violation))
    run.io(lambda: run.study.tell(trial, values, skip_if_finished=True))
    with run.lock:
        run.known[key] = _Known(trial.number, values, violation)
        run.summary.measured += 1
        run.summary.explored += trial.number in run.explored
        run.summary.best = _best_of(trial.number, dep, points, run.sla, run.summary.best)
    return TrialOutcome(trial.number, "measured", dep, None, tuple(points))


def _call_backend(
    run: _Run, trial: optuna.Trial, dep: Deployment, problem: Problem, store: Callable[[LoadPoint], None]
) -> None:
    if not run.backend.capabilities.placed:
        run.backend.measure(dep, problem, on_point=store)
        return
    if run.slots is None:
        context = MeasureContext(trial=trial.number, log_dir=run.log_dir)
        run.backend.measure(dep, problem, on_point=store, context=context)  # type: ignore[call-arg]
        return
    with run.slots.slots(dep.gpus()) as devices:
        run.io(lambda: trial.set_user_attr("devices", list(devices)))
        context = MeasureContext(devices=devices, trial=trial.number, log_dir=run.log_dir)
        run.backend.measure(dep, problem, on_point=store, context=context)  # type: ignore[call-arg]


def _set_violation(trial: optuna.Trial, violation: float) -> None:
    """The SLA violation as Optuna constraint (samplers read it) and as a readable attribute."""
    trial.set_constraint(CONSTRAINT_ATTR, violation)
    trial.set_user_attr(CONSTRAINT_ATTR, violation)


def _tell_failed(run: _Run, trial: optuna.Trial, reason: str) -> None:
    """FAIL with its reason, unless it is finished already: interrupted from the main
    thread, declared dead meanwhile, or told before a lost answer (a retried call)."""
    try:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    run.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _fail(
    run: _Run, trial: optuna.Trial, dep: Deployment, reason: str, points: list[LoadPoint]
) -> TrialOutcome:
    run.io(lambda: _tell_failed(run, trial, reason))
    with run.lock:
        run.summary.failed.append(reason)
    return TrialOutcome(trial.number, "failed", dep, reason, tuple(points))
