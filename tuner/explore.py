"""Exploration once the sampler has converged: measure a family it has not looked at.

A model-based sampler that keeps proposing deployments already measured has settled on a
region: every re-proposal is answered from storage at no cost, but no new deployment is
learnt either. After ``after`` such re-proposals in a row, the study measures instead an
unmeasured deployment of the least-measured *family* (the topology label without worker
counts, :meth:`serving.Deployment.family`; e.g. ``TEP8+DEP32``), drawn at random within it.
The measured trial is an ordinary trial: the sampler learns from it like from its own.

Why: the SLA objective rewards one region of the front, so a converged sampler leaves the
front's other end, and other families that may hold a better SLA pick, unmeasured.
Measured with benchmarks/search_efficiency.py (docs/search.md): on the 64-GPU MoE problem
this raised the hypervolume found after 10% of the space and lowered the trials to within
2% of the SLA optimum at the tight SLA.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence

from backends.base import Backend
from search_spaces import SearchSpace
from serving import Deployment, Problem

from .search.outcome import TrialOutcome
from .search.task import Task, feasible_set

__all__ = ["EXPLORE_AFTER", "Explorer", "ExplorerProposer", "explorer_for"]

#: Re-proposals of measured deployments in a row before one exploration trial.
EXPLORE_AFTER = 2


class Explorer:
    """Counts the sampler's re-proposals and chooses exploration candidates for one run.

    The feasible candidates are enumerated on the first exploration only (a run whose
    sampler never repeats itself pays nothing), unless ``candidates`` gives them (a
    screening has them already), or a function that gives them (a run's
    :attr:`tuner.search.Task.feasible`, computed once for every user).
    """

    def __init__(
        self,
        space: SearchSpace,
        problem: Problem,
        backend: Backend,
        *,
        seed: int,
        after: int = EXPLORE_AFTER,
        candidates: Iterable[Deployment] | Callable[[], Iterable[Deployment]] | None = None,
    ) -> None:
        if after < 1:
            raise ValueError(f"after must be >= 1, got {after}")
        self._space, self._problem, self._backend = space, problem, backend
        self._after = after
        self._rng = random.Random(seed)
        self._streak = 0
        self._source = candidates
        self._pool: dict[str, Deployment] | None = None
        if candidates is not None and not callable(candidates):
            self._pool = {d.key(): d for d in candidates}

    def due(self, state: str) -> bool:
        """Record a trial's outcome (``measured``, ``duplicate``, ...); True when the next
        trial should explore. Infeasible, busy and failed trials leave the count alone."""
        if state == "measured":
            self._streak = 0
        elif state == "duplicate":
            self._streak += 1
        if self._streak < self._after:
            return False
        self._streak = 0
        return True

    def choose(self, measured: Collection[str]) -> Deployment | None:
        """An unmeasured feasible deployment of the least-measured family (``measured``: the
        keys of the measured deployments); None when every candidate is measured."""
        pool = self._candidates()
        todo = [key for key in pool if key not in measured]
        if not todo:
            return None
        counts = Counter(pool[key].family() for key in measured if key in pool)
        fewest = min(counts[pool[key].family()] for key in todo)
        return pool[self._rng.choice([key for key in todo if counts[pool[key].family()] == fewest])]

    def _candidates(self) -> dict[str, Deployment]:
        if self._pool is None:
            source = self._source
            found = (
                source()
                if callable(source)
                else feasible_set(self._space, self._problem, self._backend).deployments
            )
            self._pool = {d.key(): d for d in found}
        return self._pool


def explorer_for(
    after: int,
    space: SearchSpace,
    problem: Problem,
    backend: Backend,
    *,
    seed: int,
    candidates: Iterable[Deployment] | Callable[[], Iterable[Deployment]] | None = None,
) -> Explorer | None:
    """The study's ``explore_after`` setting as an :class:`Explorer`; None when it is 0 (off).
    ``candidates``: the feasible deployments, when already known."""
    if not after:
        return None
    return Explorer(space, problem, backend, seed=seed, after=after, candidates=candidates)


class ExplorerProposer:
    """An :class:`Explorer` as a proposer (:mod:`tuner.search.proposers`): once it is due,
    the next trial measures its choice; asked after every other proposer."""

    name = "explore"

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer
        self._due = False

    @classmethod
    def of(
        cls, task: Task, *, after: int, seed: int, candidates: Sequence[Deployment] | None = None
    ) -> ExplorerProposer | None:
        """The study's ``explore_after`` over ``candidates`` (a screening's ranking) or the
        task's feasible set (enumerated on first use); None when ``after`` is 0 (off)."""
        if not after:
            return None
        pool = candidates if candidates is not None else lambda: task.feasible.deployments
        explorer = Explorer(task.space, task.problem, task.backend, seed=seed, after=after, candidates=pool)
        return cls(explorer)

    def propose(self, measured: Collection[str]) -> Deployment | None:
        if not self._due:
            return None
        self._due = False
        return self.explorer.choose(measured)

    def observe(self, outcome: TrialOutcome) -> None:
        if self.explorer.due(outcome.state):
            self._due = True
