"""How one `tuner tune` runs, chosen once: the :class:`RunMode` and the proposers it gets.

The mode says what the run is (instant or live backend, shared study or a single process,
grid, guided, first run or resume); every decision that depends on it is a property here,
and the proposers a run asks are built from it by name (:data:`PROPOSERS`, asked in that
order before the sampler). A new proposer is one factory and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from serving import Deployment, LoadPoint

from ..explore import ExplorerProposer
from ..guided import GuidedProposer, GuidedSearch
from ..screen import Screening
from .proposers import Proposer, QueueProposer
from .task import Task

if TYPE_CHECKING:
    from ..spec import StudySpec

__all__ = ["PROPOSERS", "WARM_START_SHARE", "Context", "RunMode", "build_proposers"]

#: With an instant backend, up to 1/WARM_START_SHARE of the trial budget starts from the
#: screened best candidates; the sampler explores with the rest.
WARM_START_SHARE = 5


@dataclass(frozen=True)
class RunMode:
    """What kind of run this is; see the module docstring.

    ``instant``: the backend declares measurements instant (:class:`backends.Capabilities`).
    ``shared``: other processes may write the study (several workers, or a storage given
    with ``study.storage``). ``workers``: local worker processes (1: this process runs the
    trials). ``grid``: the exhaustive sampler. ``guided``: the spec asks for simulator
    guidance. ``resume``: the study held trials before this run.
    """

    instant: bool
    shared: bool
    workers: int
    grid: bool
    guided: bool
    resume: bool = False

    @classmethod
    def of(cls, spec: StudySpec, *, instant: bool, workers: int) -> RunMode:
        return cls(
            instant=instant,
            shared=workers > 1 or spec.study.storage is not None,
            workers=workers,
            grid=spec.study.sampler == "grid",
            guided=spec.study.guided,
        )

    @property
    def buffered(self) -> bool:
        """One process, an instant backend: trials go to a write-behind twin."""
        return self.instant and not self.shared

    @property
    def screens(self) -> bool:
        """Price the whole feasible space first (instant; not for the grid, which measures
        all of it anyway)."""
        return self.instant and not self.grid

    @property
    def guides(self) -> bool:
        """Simulator guidance for a live backend run by this process (not for the grid,
        which measures everything anyway, nor for an instant backend, which screens)."""
        return self.guided and not self.grid and not self.instant and self.workers == 1

    @property
    def queues_ahead(self) -> bool:
        """Fixed proposals (grid, warm start) go to the study's queue before the first
        trial, so every worker of a shared study takes from it."""
        return self.shared


@dataclass(frozen=True)
class Context:
    """What a proposer factory may read."""

    task: Task
    mode: RunMode
    budget: int
    seed: int
    explore_after: int
    screening: Screening | None = None
    #: (deployment, its points) of every trial measured before this run (guided runs).
    measured: Sequence[tuple[Deployment, Sequence[LoadPoint]]] = ()
    #: Keys of the deployments the study's trials hold already (a resumed grid).
    tried: frozenset[str] = frozenset()


def _grid(ctx: Context) -> Proposer | None:
    """Every feasible candidate once, in the space's order, up to the budget; a resumed
    run proposes those no trial has yet (an interrupted grid continues)."""
    if not ctx.mode.grid:
        return None
    grid = ctx.task.feasible.deployments[: ctx.budget]
    return QueueProposer("grid", [d for d in grid if d.key() not in ctx.tried])


def _warm_start(ctx: Context) -> Proposer | None:
    """A first run on an instant backend starts from the screened best and front."""
    if ctx.screening is None or ctx.mode.resume:
        return None
    return QueueProposer("warm_start", ctx.screening.warm_start(max(1, ctx.budget // WARM_START_SHARE)))


def _guided(ctx: Context) -> Proposer | None:
    if not ctx.mode.guides:
        return None
    task = ctx.task
    search = GuidedSearch(
        task.space, task.problem, task.sla, task.objective, feasible=task.feasible.deployments
    )
    proposer = GuidedProposer(search)
    proposer.start(ctx.measured)
    return proposer


def _explore(ctx: Context) -> Proposer | None:
    ranked = ctx.screening.ranked if ctx.screening is not None else None  # its order, as before
    return ExplorerProposer.of(ctx.task, after=ctx.explore_after, seed=ctx.seed, candidates=ranked)


#: Proposer factories by name, in the order a run asks them; a factory returns None when
#: the run's mode has no use for it.
PROPOSERS: dict[str, Callable[[Context], Proposer | None]] = {
    "grid": _grid,
    "warm_start": _warm_start,
    "guided": _guided,
    "explore": _explore,
}


def build_proposers(ctx: Context) -> list[Proposer]:
    """The proposers of a run, in registry order."""
    return [p for factory in PROPOSERS.values() if (p := factory(ctx)) is not None]
