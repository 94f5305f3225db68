"""The Optuna study over deployments, read and run: summaries from storage and
:func:`run_trials`, the trial loop of :mod:`tuner.search.loop` with its inputs passed one by
one (the worker command, benchmarks and tests call it so).

Every FAIL trial stores its reason (``fail_reason``); what a trial stores is
:class:`tuner.search.TrialRecord`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from backends import Backend
from search_spaces import SearchSpace
from serving import LoadPoint, Problem

from .explore import Explorer, ExplorerProposer
from .heartbeats import Heartbeats
from .objectives import get_objective
from .outages import StorageOutage
from .search import record
from .search.loop import EXHAUSTED_AFTER, POLL_S, TrialLoop
from .search.outcome import StudySummary, TrialOutcome, best_of
from .search.proposers import Proposer
from .search.record import load_measured
from .search.task import Task
from .sla import SLA
from .slots import GpuSlots
from .storage import Claims

__all__ = [
    "EXHAUSTED_AFTER",
    "EXPLORED_ATTR",
    "POINTS_ATTR",
    "POLL_S",
    "StudySummary",
    "TrialOutcome",
    "load_measured",
    "objective_values",
    "run_trials",
    "summarize",
]

#: User attribute holding a trial's load points (a list of LoadPoint dicts).
POINTS_ATTR = record.POINTS_KEY
#: User attribute of a trial the explorer chose (tuner/explore.py): the family it explores.
EXPLORED_ATTR = record.EXPLORED_KEY


def objective_values(points: list[LoadPoint], sla: SLA, objective: str) -> tuple[list[float], float]:
    """Trial values and SLA violation of the registered ``objective``
    (:data:`tuner.objectives.OBJECTIVES`: ``sla``, ``front``, ``cost``)."""
    return get_objective(objective).values(points, sla)


def summarize(study: optuna.Study, sla: SLA | None = None) -> StudySummary:
    """The counts of a whole study from storage (every worker's trials), for ``tuner status``
    and for a run whose trials other processes ran."""
    summary = StudySummary()
    for r in record.records(study):
        if r.state == TrialState.COMPLETE:
            if r.duplicate_of is not None:
                summary.duplicates += 1
            else:
                summary.measured += 1
                summary.explored += r.explored_family is not None
                if sla is not None and (dep := r.deployment) is not None:
                    summary.best = best_of(r.number, dep, r.points, sla, summary.best)
        elif r.state == TrialState.PRUNED:
            if r.busy is not None:
                summary.busy += 1
            else:
                summary.infeasible[(r.infeasible or "unknown").split(":", 1)[0]] += 1
        elif r.state == TrialState.FAIL:
            summary.failed.append(r.fail_reason or record.NO_HEARTBEAT)
    return summary


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
    proposers: tuple[Proposer, ...] = (),
) -> StudySummary:
    """Run trials until the study holds ``n_trials`` finished trials (a resume continues;
    other workers' trials count), or until ``distinct`` different deployments are measured
    (the whole feasible space, when a screening counted it).

    ``explorer``: after the sampler re-proposes measured deployments, measure an unmeasured
    one of the least-measured family (:mod:`tuner.explore`), asked after ``proposers``.
    The rest is :class:`tuner.search.loop.TrialLoop`'s.
    """
    task = Task(problem=problem, space=space, backend=backend, sla=sla, objective=objective)
    asked = (*proposers, ExplorerProposer(explorer)) if explorer is not None else proposers
    loop = TrialLoop(
        study,
        task,
        proposers=asked,
        on_trial=on_trial,
        distinct=distinct,
        claims=claims,
        slots=slots,
        log_dir=log_dir,
        heartbeats=heartbeats,
        outage=outage,
    )
    return loop.run(n_trials)
