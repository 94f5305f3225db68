"""The Optuna study over deployments: ask, check, measure, tell, with durable storage.

Each trial's deployment and every load point are written to the trial's user attributes as
soon as they exist, so a killed run loses nothing and a re-run resumes the same study.
Infeasible candidates are told PRUNED with their reason (never measured); a candidate that
fails is told FAIL with its reason; a deployment already measured is answered from storage.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from backends import Backend
from search_spaces import SearchSpace, infeasible_reason
from serving import CandidateFailed, Deployment, LoadPoint, Problem

from .results import MeasuredPoint
from .samplers import CONSTRAINT_ATTR
from .sla import SLA

__all__ = ["StudySummary", "TrialOutcome", "load_measured", "objective_values", "run_trials"]

log = logging.getLogger(__name__)

#: User attribute holding a trial's load points (a list of LoadPoint dicts).
POINTS_ATTR = "points"
#: Stop early when this many asks in a row brought nothing new (space exhausted).
EXHAUSTED_AFTER = 100


@dataclass(frozen=True)
class TrialOutcome:
    """What happened to one trial, for progress display."""

    number: int
    state: Literal["measured", "infeasible", "duplicate", "failed"]
    deployment: Deployment | None
    reason: str | None = None
    points: tuple[LoadPoint, ...] = ()


@dataclass
class StudySummary:
    """Counts of one run of :func:`run_trials` plus the best SLA-feasible point so far."""

    measured: int = 0
    duplicates: int = 0
    infeasible: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    best: MeasuredPoint | None = None
    exhausted: bool = False

    @property
    def trials(self) -> int:
        return self.measured + self.duplicates + sum(self.infeasible.values()) + len(self.failed)


def objective_values(points: list[LoadPoint], sla: SLA, objective: str) -> tuple[list[float], float]:
    """Trial values and SLA violation.

    ``sla``: max tok/s/GPU over points meeting the SLA (violation 0); when none meets it,
    the tok/s/GPU of the point nearest to the SLA, with its positive violation, so the
    sampler learns which way the feasible region lies. ``front``: (max tok/s/GPU, max
    tok/s/user) over the curve: how far the deployment reaches along each axis.
    """
    if objective == "front":
        return [max(p.tok_s_gpu for p in points), max(p.tok_s_user for p in points)], 0.0
    ok = [p.tok_s_gpu for p in points if sla.meets(p)]
    if ok:
        return [max(ok)], 0.0
    nearest = min(points, key=sla.violation)
    return [nearest.tok_s_gpu], sla.violation(nearest)


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


def _best_of(trial_number: int, dep: Deployment, points: list[LoadPoint], sla: SLA,
             best: MeasuredPoint | None) -> MeasuredPoint | None:
    for p in points:
        if sla.meets(p) and (best is None or p.tok_s_gpu > best.point.tok_s_gpu):
            best = MeasuredPoint(trial_number, dep, p)
    return best


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
) -> StudySummary:
    """Run trials until the study holds ``n_trials`` finished trials (a resume continues),
    or until ``distinct`` different deployments are measured (the whole feasible space,
    when a screening counted it)."""
    summary = StudySummary()
    for m in load_measured(study):
        if sla.meets(m.point) and (summary.best is None or m.point.tok_s_gpu > summary.best.point.tok_s_gpu):
            summary.best = m
    known = _known(study)
    idle = 0
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    while len(study.get_trials(deepcopy=False, states=finished)) < n_trials:
        outcome = _one_trial(study, space, backend, problem, sla, objective, known, summary)
        idle = idle + 1 if outcome.state in ("infeasible", "duplicate") else 0
        if on_trial is not None:
            on_trial(outcome, summary)
        if idle >= EXHAUSTED_AFTER or (distinct is not None and len(known) >= distinct):
            summary.exhausted = True
            break
    return summary


def _one_trial(
    study: optuna.Study,
    space: SearchSpace,
    backend: Backend,
    problem: Problem,
    sla: SLA,
    objective: str,
    known: dict[str, _Known],
    summary: StudySummary,
) -> TrialOutcome:
    trial = study.ask()
    dep = space.suggest(trial, problem)
    key = dep.key()
    trial.set_user_attr("deployment", dep.to_dict())
    trial.set_user_attr("label", dep.label())
    reason = infeasible_reason(dep, problem) or backend.check(dep, problem)
    if reason is not None:
        trial.set_user_attr("infeasible", reason)
        study.tell(trial, state=TrialState.PRUNED)
        summary.infeasible[reason.split(":", 1)[0]] += 1
        return TrialOutcome(trial.number, "infeasible", dep, reason)
    if key in known:
        prior = known[key]
        trial.set_user_attr("duplicate_of", prior.number)
        _set_violation(trial, prior.violation)
        study.tell(trial, prior.values)
        summary.duplicates += 1
        return TrialOutcome(trial.number, "duplicate", dep, f"same as trial {prior.number}")
    points: list[LoadPoint] = []

    def store(point: LoadPoint) -> None:
        # The whole list so far, rewritten per point: a killed run keeps every point.
        points.append(point)
        trial.set_user_attr(POINTS_ATTR, [p.to_dict() for p in points])

    try:
        backend.measure(dep, problem, on_point=store)
    except CandidateFailed as exc:
        return _fail(study, trial, summary, dep, exc.reason, points)
    except KeyboardInterrupt:
        _fail(study, trial, summary, dep, "interrupted", points)
        raise
    except Exception as exc:  # a backend bug must not end the study: record it as data
        log.exception("trial %d: backend error", trial.number)
        return _fail(study, trial, summary, dep, f"backend error: {type(exc).__name__}: {exc}", points)
    if not points:
        return _fail(study, trial, summary, dep, "backend returned no load points", points)
    values, violation = objective_values(points, sla, objective)
    _set_violation(trial, violation)
    study.tell(trial, values)
    known[key] = _Known(trial.number, values, violation)
    summary.measured += 1
    summary.best = _best_of(trial.number, dep, points, sla, summary.best)
    return TrialOutcome(trial.number, "measured", dep, None, tuple(points))


def _set_violation(trial: optuna.Trial, violation: float) -> None:
    """The SLA violation as Optuna constraint (samplers read it) and as a readable attribute."""
    trial.set_constraint(CONSTRAINT_ATTR, violation)
    trial.set_user_attr(CONSTRAINT_ATTR, violation)


def _fail(study: optuna.Study, trial: optuna.Trial, summary: StudySummary, dep: Deployment,
          reason: str, points: list[LoadPoint]) -> TrialOutcome:
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    summary.failed.append(reason)
    return TrialOutcome(trial.number, "failed", dep, reason, tuple(points))
