"""What a trial came to (:class:`TrialOutcome`) and what a run of trials came to
(:class:`StudySummary`): what progress displays and proposers read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from serving import Deployment, LoadPoint

from ..results import MeasuredPoint
from ..sla import SLA

__all__ = ["Known", "OutcomeState", "StudySummary", "TrialOutcome", "best_of"]

OutcomeState = Literal["measured", "infeasible", "duplicate", "failed", "busy"]


@dataclass(frozen=True)
class TrialOutcome:
    """What happened to one trial, for progress display and for proposers."""

    number: int
    state: OutcomeState
    deployment: Deployment | None
    reason: str | None = None
    points: tuple[LoadPoint, ...] = ()


@dataclass(frozen=True)
class Known:
    """A measured deployment: the trial that measured it, its values and SLA violation."""

    number: int
    values: list[float]
    violation: float


@dataclass
class StudySummary:
    """Counts of one run of trials plus the best SLA-feasible point so far."""

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


def best_of(
    trial_number: int,
    dep: Deployment,
    points: list[LoadPoint],
    sla: SLA,
    best: MeasuredPoint | None,
) -> MeasuredPoint | None:
    """``best``, or the point of ``points`` with more tok/s/GPU that meets the SLA."""
    for p in points:
        if sla.meets(p) and (best is None or p.tok_s_gpu > best.point.tok_s_gpu):
            best = MeasuredPoint(trial_number, dep, p)
    return best
