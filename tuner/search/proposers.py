"""Proposers: who chooses the next deployment before the sampler does.

A run asks its proposers, in order, before each trial; the first that proposes a
deployment has it queued (``study.enqueue_trial``) and the trial measures it as any other;
when none proposes, the Optuna sampler draws. Every proposer observes every trial's
outcome. Built-ins: the grid and the screened warm start (:class:`QueueProposer`), the
simulator-guided search (:class:`tuner.guided.GuidedProposer`) and the explorer
(:class:`tuner.explore.ExplorerProposer`); which of them a run uses is chosen once, from
its :class:`~tuner.search.strategy.RunMode` (:data:`tuner.search.strategy.PROPOSERS`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from serving import Deployment

from .outcome import TrialOutcome

__all__ = ["Proposer", "QueueProposer"]


@runtime_checkable
class Proposer(Protocol):
    """The contract of a proposer.

    - ``name``: the registry name (``grid``, ``warm_start``, ``guided``, ``explore``).
    - ``propose(measured)``: called just before a trial is asked, only when nothing is
      queued in the study already (a dead worker's retry goes first) and the budget has
      room; ``measured`` holds the keys (:meth:`serving.Deployment.key`) of every
      deployment measured in the study so far. Returns the deployment to measure next, or
      None to leave this trial to the next proposer (and finally to the sampler). It must
      not raise for a valid run; the study answers a deployment measured before from
      storage and one that cannot run is told PRUNED, so proposing either costs a trial,
      nothing else.
    - ``observe(outcome)``: called after every trial of the run (whoever proposed it).
    """

    name: str

    def propose(self, measured: Collection[str]) -> Deployment | None: ...

    def observe(self, outcome: TrialOutcome) -> None: ...


class QueueProposer:
    """A fixed list, proposed in order, one per trial (the grid, the warm start). Its
    proposals do not depend on outcomes, so a shared study queues them all ahead
    (:meth:`drain`): every worker then takes from the same queue."""

    def __init__(self, name: str, deployments: Sequence[Deployment]) -> None:
        self.name = name
        self._todo = list(deployments)
        self.size = len(self._todo)

    def propose(self, measured: Collection[str]) -> Deployment | None:
        return self._todo.pop(0) if self._todo else None

    def observe(self, outcome: TrialOutcome) -> None:
        return None

    def drain(self) -> list[Deployment]:
        """Every proposal not made yet (the proposer is empty afterwards)."""
        out, self._todo = self._todo, []
        return out
