"""The objective type: what Optuna maximises per trial, and the front a run reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optuna.study import StudyDirection

from serving import LoadPoint

from ..results import MeasuredPoint
from ..sla import SLA

__all__ = ["Front", "Objective", "Values"]

#: (trial values, SLA violation: 0 when met) of a deployment's load points.
Values = Callable[[Sequence[LoadPoint], SLA], tuple[list[float], float]]
Front = Callable[[Sequence[MeasuredPoint]], list[MeasuredPoint]]


@dataclass(frozen=True)
class Objective:
    """``values`` turns a trial's points into its (maximised) values and SLA violation;
    ``front`` is the front the run writes to ``front.csv``.

    Every value is maximised (:attr:`directions`), and the first value is the one a
    screening or the guided search ranks candidates by (:meth:`rank_key`).
    ``estimates``: ``values`` reads a backend's estimated fields (energy), so a screening
    must price candidates with them (``Backend.measure(estimates=True)``).
    """

    name: str
    help: str
    n_values: int
    values: Values
    front: Front
    estimates: bool = False

    @property
    def directions(self) -> list[StudyDirection]:
        """Optuna study directions, one per value."""
        return [StudyDirection.MAXIMIZE] * self.n_values

    @staticmethod
    def rank_key(values: Sequence[float], violation: float) -> tuple[float, float]:
        """Sort key of a candidate, smaller first: meeting the SLA first, then by the first
        value."""
        return violation, -values[0]
