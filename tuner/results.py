"""A load point together with the trial and deployment it belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from serving import Deployment, LoadPoint

__all__ = ["MeasuredPoint"]


@dataclass(frozen=True)
class MeasuredPoint:
    """One operating point of one trial's deployment: what the front and the pick rank."""

    trial: int
    deployment: Deployment
    point: LoadPoint

    @property
    def label(self) -> str:
        return self.deployment.label()

    @property
    def gpus(self) -> int:
        return self.deployment.gpus()
