"""One asked trial of a :class:`~tuner.search.loop.TrialLoop`: infeasible (PRUNED, with the
reason), busy elsewhere (PRUNED), measured before (answered from storage), or measured now
(COMPLETE with its values, or FAIL with the reason). A failed trial is data, never an
exception: only a storage given up on and Ctrl-C leave through here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from backends.base import MeasureContext
from serving import CandidateFailed, Deployment, LoadPoint, Problem

from ..errors import StorageError
from . import record
from .outcome import Known, TrialOutcome
from .record import TrialRecord

if TYPE_CHECKING:
    from .loop import TrialLoop

__all__ = ["decide", "fail", "tell_failed"]

log = logging.getLogger(__name__)


def decide(run: TrialLoop, trial: optuna.Trial, dep: Deployment) -> TrialOutcome:
    key = dep.key()
    run.io(lambda: record.describe(trial, dep))
    reason = run.task.reason(dep)
    if reason is not None:
        run.io(lambda: record.mark_infeasible(trial, reason))
        run.io(lambda: run.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True))
        with run.lock:
            run.summary.infeasible[reason.split(":", 1)[0]] += 1
        return TrialOutcome(trial.number, "infeasible", dep, reason)
    with run.lock:
        prior = run.known.get(key)
    if prior is None and (claims := run.claims) is not None:
        holder_id = run.io(lambda: claims.claim(key, claims.trial_id(trial.number)))
        if holder_id is not None:
            holder = TrialRecord.of(run.io(lambda: claims.holder(holder_id)))
            if holder.state != TrialState.COMPLETE:
                return _busy(run, trial, dep, holder.number)
            prior = Known(holder.number, list(holder.values), holder.violation)
            with run.lock:
                run.known[key] = prior
    if prior is not None:
        known = prior
        run.io(lambda: record.mark_duplicate(trial, known.number))
        run.io(lambda: record.set_violation(trial, known.violation))
        run.io(lambda: run.study.tell(trial, known.values, skip_if_finished=True))
        with run.lock:
            run.summary.duplicates += 1
        return TrialOutcome(trial.number, "duplicate", dep, f"same as trial {prior.number}")
    return _measure(run, trial, dep)


def _busy(run: TrialLoop, trial: optuna.Trial, dep: Deployment, holder: int) -> TrialOutcome:
    """Another worker is measuring this deployment: give the trial up (PRUNED, with why)."""
    reason = f"busy: trial {holder} is measuring it"
    run.io(lambda: record.mark_busy(trial, reason))
    run.io(lambda: run.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True))
    with run.lock:
        run.summary.busy += 1
    return TrialOutcome(trial.number, "busy", dep, reason)


def _measure(run: TrialLoop, trial: optuna.Trial, dep: Deployment) -> TrialOutcome:
    # A retry of a dead worker's trial inherits the points it stored: measure only the rest.
    points = record.stored_points(trial)
    ladder = run.task.problem.workload.load_keys  # concurrencies, or arrival rates (open loop)
    rest = tuple(c for c in ladder if c not in {p.load_key for p in points})
    problem = run.task.problem
    if points:
        run.io(lambda: record.mark_resumed(trial, len(points)))
        problem = dataclasses.replace(problem, workload=problem.workload.with_load_keys(rest))

    instant = run.task.backend.capabilities.instant

    def store(point: LoadPoint) -> None:
        # The whole list so far, rewritten per point: a killed run keeps every point. An
        # instant backend's points cost microseconds: written once, with the result.
        points.append(point)
        if not instant:
            stored = list(points)
            run.io(lambda: record.store_points(trial, stored))

    with run.lock:
        run.active[trial.number] = (trial, dep, points)
    try:
        if rest:
            _call_backend(run, trial, dep, problem, store)
    except CandidateFailed as exc:
        return fail(run, trial, dep, exc.reason, points)
    except KeyboardInterrupt:
        fail(run, trial, dep, "interrupted", points)
        raise
    except StorageError:  # given up on the storage: the trial's fate is for the heartbeats
        raise
    except Exception as exc:  # a backend bug must not end the study: record it as data
        log.exception("trial %d: backend error", trial.number)
        return fail(run, trial, dep, f"backend error: {type(exc).__name__}: {exc}", points)
    finally:
        with run.lock:
            run.active.pop(trial.number, None)
    if not points:
        return fail(run, trial, dep, "backend returned no load points", points)
    points.sort(key=lambda p: ladder.index(p.load_key) if p.load_key in ladder else len(ladder))
    if instant:
        run.io(lambda: record.store_points(trial, points))
    values, violation = run.task.values(points)
    run.io(lambda: record.set_violation(trial, violation))
    run.io(lambda: run.study.tell(trial, values, skip_if_finished=True))
    with run.lock:
        run.measured_one(trial.number, dep, points, Known(trial.number, values, violation))
    return TrialOutcome(trial.number, "measured", dep, None, tuple(points))


def _call_backend(
    run: TrialLoop, trial: optuna.Trial, dep: Deployment, problem: Problem, store: Callable[[LoadPoint], None]
) -> None:
    backend = run.task.backend
    if not backend.capabilities.placed:
        backend.measure(dep, problem, on_point=store)
        return
    if run.slots is None:
        context = MeasureContext(trial=trial.number, log_dir=run.log_dir)
        backend.measure(dep, problem, on_point=store, context=context)  # type: ignore[call-arg]
        return
    with run.slots.slots(dep.gpus()) as devices:
        run.io(lambda: record.store_devices(trial, devices))
        context = MeasureContext(devices=devices, trial=trial.number, log_dir=run.log_dir)
        backend.measure(dep, problem, on_point=store, context=context)  # type: ignore[call-arg]


def tell_failed(run: TrialLoop, trial: optuna.Trial, reason: str) -> None:
    """FAIL with its reason, unless it is finished already: interrupted from the main
    thread, declared dead meanwhile, or told before a lost answer (a retried call)."""
    try:
        record.set_fail_reason(trial, reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    run.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def fail(
    run: TrialLoop, trial: optuna.Trial, dep: Deployment, reason: str, points: list[LoadPoint]
) -> TrialOutcome:
    run.io(lambda: tell_failed(run, trial, reason))
    with run.lock:
        run.summary.failed.append(reason)
    return TrialOutcome(trial.number, "failed", dep, reason, tuple(points))
