"""What one trial stores: the one owner of a trial's user attributes.

Every key a trial writes is spelled here once; the study loop writes through the functions
of this module (each one storage call, so the loop can retry it through an outage) and
every reader (the loop, summaries, ``tuner status``, the run directory, heartbeats' retries)
reads a :class:`TrialRecord`, as Optuna's own code reads a :class:`~optuna.trial.FrozenTrial`.

The keys are the stored format of a run directory: renaming one breaks resuming and
reading older runs, so they stay as they are.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from serving import Deployment, LoadPoint

from ..results import MeasuredPoint

__all__ = [
    "CONSTRAINT_KEY",
    "DEPLOYMENT_KEY",
    "EXPLORED_KEY",
    "FAIL_REASON_KEY",
    "POINTS_KEY",
    "TrialRecord",
    "describe",
    "inherited",
    "load_measured",
    "mark_busy",
    "mark_duplicate",
    "mark_explored",
    "mark_infeasible",
    "mark_resumed",
    "records",
    "set_fail_reason",
    "set_violation",
    "store_devices",
    "store_points",
    "stored_points",
]

#: The deployment a trial measures (:meth:`serving.Deployment.to_dict`).
DEPLOYMENT_KEY = "deployment"
#: Its topology label, for ``tuner status`` and the dashboard.
LABEL_KEY = "label"
#: ``host:pid`` of the process that ran the trial.
WORKER_KEY = "worker"
#: The trial's load points so far (a list of LoadPoint dicts).
POINTS_KEY = "points"
#: Why the deployment cannot run (statically): a PRUNED trial.
INFEASIBLE_KEY = "infeasible"
#: Another worker is measuring the same deployment: a PRUNED trial.
BUSY_KEY = "busy"
#: The trial number that measured the same deployment before: a COMPLETE trial, no points.
DUPLICATE_KEY = "duplicate_of"
#: Why a trial failed (every FAIL trial has one).
FAIL_REASON_KEY = "fail_reason"
#: The family a trial the explorer chose explores (:mod:`tuner.explore`).
EXPLORED_KEY = "explored_family"
#: Constraint key (and user attribute) of a trial's SLA violation; <= 0 means feasible.
CONSTRAINT_KEY = "sla_violation"
#: How many points a retry inherited from the trial it retries.
RESUMED_KEY = "resumed_points"
#: The GPUs the slot packer gave the trial.
DEVICES_KEY = "devices"
#: What a retry inherits: what it measures and what was measured already.
INHERITED_KEYS = (DEPLOYMENT_KEY, LABEL_KEY, POINTS_KEY)
#: Why a FAIL trial without a stored reason failed (its worker died before writing one).
NO_HEARTBEAT = "worker died (no heartbeat)"


@dataclass(frozen=True, eq=False)
class TrialRecord:
    """A stored trial as the tuner reads it (from a :class:`~optuna.trial.FrozenTrial`)."""

    number: int
    state: TrialState
    values: tuple[float, ...]
    attrs: Mapping[str, Any]
    #: The trial this one retries (a dead worker's), if any.
    retry_of: int | None = None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        return cls(
            number=trial.number,
            state=trial.state,
            values=tuple(trial.values or ()),
            attrs=trial.user_attrs,
            retry_of=trial.system_attrs.get("failed_trial"),
        )

    @cached_property
    def deployment(self) -> Deployment | None:
        data = self.attrs.get(DEPLOYMENT_KEY)
        return None if data is None else Deployment.from_dict(data)

    @property
    def has_deployment(self) -> bool:
        return DEPLOYMENT_KEY in self.attrs

    @property
    def label(self) -> str | None:
        return self.attrs.get(LABEL_KEY)

    @property
    def worker(self) -> str | None:
        return self.attrs.get(WORKER_KEY)

    @property
    def n_points(self) -> int:
        return len(self.attrs.get(POINTS_KEY, []))

    @cached_property
    def points(self) -> list[LoadPoint]:
        return [LoadPoint.from_dict(p) for p in self.attrs.get(POINTS_KEY, [])]

    @property
    def duplicate_of(self) -> int | None:
        value = self.attrs.get(DUPLICATE_KEY)
        return None if value is None else int(value)

    @property
    def measured(self) -> bool:
        """COMPLETE with its own measurement (not a duplicate answered from storage)."""
        return self.state == TrialState.COMPLETE and self.has_deployment and DUPLICATE_KEY not in self.attrs

    @property
    def infeasible(self) -> str | None:
        return self._text(INFEASIBLE_KEY)

    @property
    def busy(self) -> str | None:
        return self._text(BUSY_KEY)

    @property
    def fail_reason(self) -> str | None:
        return self._text(FAIL_REASON_KEY)

    def _text(self, key: str) -> str | None:
        """The reason stored under ``key``, as text (None when absent)."""
        value = self.attrs.get(key)
        return None if value is None else str(value)

    @property
    def explored_family(self) -> str | None:
        return self.attrs.get(EXPLORED_KEY)

    @property
    def violation(self) -> float:
        return float(self.attrs.get(CONSTRAINT_KEY, 0.0))

    @property
    def resumed_points(self) -> int:
        return int(self.attrs.get(RESUMED_KEY, 0))

    @property
    def reason(self) -> str:
        """Why the trial did not measure (failed, infeasible, busy), or ""."""
        return (
            self.fail_reason
            or self.infeasible
            or self.busy
            or (NO_HEARTBEAT if self.state == TrialState.FAIL else "")
        )


def records(study: optuna.Study, states: Sequence[TrialState] | None = None) -> list[TrialRecord]:
    """The study's trials as records (``states``: only those)."""
    trials = study.get_trials(deepcopy=False, states=None if states is None else tuple(states))
    return [TrialRecord.of(t) for t in trials]


def load_measured(study: optuna.Study) -> list[MeasuredPoint]:
    """Every load point of every completed, measured trial (duplicates carry none)."""
    out: list[MeasuredPoint] = []
    for r in records(study, (TrialState.COMPLETE,)):
        if r.measured and (dep := r.deployment) is not None:
            out.extend(MeasuredPoint(r.number, dep, p) for p in r.points)
    return out


def stored_points(trial: optuna.Trial) -> list[LoadPoint]:
    """The points a running trial holds already (a retry inherits its original's)."""
    return [LoadPoint.from_dict(p) for p in trial.user_attrs.get(POINTS_KEY, [])]


def inherited(trial: FrozenTrial) -> dict[str, Any]:
    """The user attributes a retry of ``trial`` starts with (see :data:`INHERITED_KEYS`)."""
    return {k: v for k, v in trial.user_attrs.items() if k in INHERITED_KEYS}


# -- writing: one storage call each -------------------------------------------------------
def describe(trial: optuna.Trial, deployment: Deployment) -> None:
    """What the trial measures and who measures it (before anything else is known)."""
    trial.set_user_attr(DEPLOYMENT_KEY, deployment.to_dict())
    trial.set_user_attr(LABEL_KEY, deployment.label())
    trial.set_user_attr(WORKER_KEY, f"{socket.gethostname()}:{os.getpid()}")  # for `tuner status`


def mark_infeasible(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(INFEASIBLE_KEY, reason)


def mark_busy(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(BUSY_KEY, reason)


def mark_duplicate(trial: optuna.Trial, number: int) -> None:
    trial.set_user_attr(DUPLICATE_KEY, number)


def mark_explored(trial: optuna.Trial, family: str) -> None:
    trial.set_user_attr(EXPLORED_KEY, family)


def mark_resumed(trial: optuna.Trial, n_points: int) -> None:
    trial.set_user_attr(RESUMED_KEY, n_points)


def store_points(trial: optuna.Trial, points: Sequence[LoadPoint]) -> None:
    """The whole list so far (rewritten per point by a live run: a killed run keeps all)."""
    trial.set_user_attr(POINTS_KEY, [p.to_dict() for p in points])


def store_devices(trial: optuna.Trial, devices: Sequence[int]) -> None:
    trial.set_user_attr(DEVICES_KEY, list(devices))


def set_violation(trial: optuna.Trial, violation: float) -> None:
    """The SLA violation as Optuna constraint (samplers and optuna-dashboard read it) and as
    a readable attribute."""
    trial.set_constraint(CONSTRAINT_KEY, violation)
    trial.set_user_attr(CONSTRAINT_KEY, violation)


def set_fail_reason(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(FAIL_REASON_KEY, reason)


def set_fail_reason_in(storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> None:
    """The same through the storage (a looker failing another worker's trial)."""
    storage.set_trial_user_attr(trial_id, FAIL_REASON_KEY, reason)
