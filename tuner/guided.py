"""Simulator-guided live search: spend live trials where the simulator predicts the front.

Before the first live trial the simulator prices every feasible candidate (as
:mod:`tuner.screen` does). :meth:`GuidedSearch.propose` hands out the best predicted
candidate not measured yet; :meth:`GuidedSearch.observe` takes the measured load points of
a live trial, refits a few *global* simulator constants to every point measured so far
(a small regularised least-squares fit in log space; the constants are never set per
point) and re-prices the space, so the next proposal uses the corrected model.

A run asks it as a proposer (:class:`GuidedProposer`, :mod:`tuner.search.proposers`):
before each trial the best predicted candidate not tried yet, except every
``SAMPLER_EVERY``-th trial, which is the sampler's own draw; after each measured trial the
simulator is refitted. :class:`GuidedQueue` does the same for a caller that runs the study
itself (it feeds the study's queue).

The refit parameters (:data:`FITTED`) are multipliers on the prior constants: HBM and GEMM
efficiency of the problem's GPU generation, the engine's per-step and per-request overheads,
and for MoE models the expert-load imbalance. Those are the constants that move whole
families of deployments together (decode is HBM-bound, prefill compute-bound, small batches
overhead-bound, EP workers imbalance-bound); fitting more from a handful of live trials
would overfit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from backends.simulator import SimulatorBackend
from backends.simulator.constants import Constants
from search_spaces import SearchSpace
from serving import Deployment, LoadPoint, Problem

from .objectives import get_objective
from .search.outcome import TrialOutcome
from .search.task import feasible_set
from .sla import SLA

__all__ = ["FITTED", "GuidanceReport", "GuidedProposer", "GuidedQueue", "GuidedSearch", "fitted_names"]

log = logging.getLogger(__name__)

#: Constants refitted after each live trial, as (name template, applies to MoE only).
#: ``{gen}`` is the GPU generation's suffix, ``{engine}`` the simulator's engine.
FITTED = (
    ("hbm_efficiency{gen}", False),
    ("gemm_compute_efficiency{gen}", False),
    ("step_overhead_us_{engine}", False),
    ("request_overhead_us_{engine}", False),
    ("moe_imbalance", True),
)
#: Ridge weight pulling each log-multiplier to 0 (the prior): with one live trial the fit
#: moves the constants only as far as the evidence of its ~10 points warrants.
PRIOR_WEIGHT = 0.5
#: Metrics whose log-ratio (predicted / measured) the fit minimises, per load point.
FIT_METRICS = ("tpot_ms_p50", "ttft_ms_p50", "tok_s_gpu")
#: Multipliers are kept within [1/MAX_MOVE, MAX_MOVE] of the prior.
MAX_MOVE = 4.0


def fitted_names(problem: Problem, engine: str) -> list[str]:
    """The constant names :class:`GuidedSearch` refits for ``problem`` and ``engine``."""
    gen = "_blackwell" if problem.gpu.generation == "blackwell" else ""
    return [
        template.format(gen=gen, engine=engine)
        for template, moe_only in FITTED
        if problem.arch.is_moe or not moe_only
    ]


@dataclass(frozen=True)
class GuidanceReport:
    """How the simulator moved and how well it now predicts the measured trials.

    ``constants``: name -> (prior, fitted). ``error_before`` / ``error_after``: median
    absolute relative error of the predicted tok/s/GPU over every measured load point,
    with the prior and with the fitted constants. ``moved``: median relative change of the
    predicted objective over the feasible space between prior and fitted constants.
    """

    measured: int
    constants: dict[str, tuple[float, float]]
    error_before: float
    error_after: float
    moved: float

    def summary(self) -> str:
        consts = ", ".join(f"{k} {a:g}->{b:.4g}" for k, (a, b) in self.constants.items())
        return (
            f"guided search: {self.measured} live trials; simulator error on them "
            f"{self.error_before:.1%} -> {self.error_after:.1%}; predictions moved "
            f"{self.moved:.1%} (median); {consts}"
        )


class GuidedSearch:
    """Propose live candidates from the simulator's ranking, refit it after each trial.

    ``simulator_options`` are :class:`backends.simulator.SimulatorBackend` options
    (``engine``, ``constants``, ``spec_decode``). ``feasible``: the run's feasible set
    (:attr:`tuner.search.Task.feasible`), of which the simulator prices what it can; by
    default what the simulator itself finds feasible. Construction prices the whole
    feasible space once (about a second for a 64-GPU MoE space). Not thread-safe.
    """

    def __init__(
        self,
        space: SearchSpace,
        problem: Problem,
        sla: SLA,
        objective: str = "sla",
        simulator_options: Mapping[str, Any] | None = None,
        *,
        feasible: Sequence[Deployment] | None = None,
    ) -> None:
        self.space, self.problem, self.sla, self.objective = space, problem, sla, objective
        self._sim = SimulatorBackend(**dict(simulator_options or {}))
        self.prior: Constants = self._sim.constants
        self.names = fitted_names(problem, self._sim.engine)
        self._theta = np.zeros(len(self.names))
        if feasible is None:
            self.feasible = list(feasible_set(space, problem, self._sim).deployments)
        else:
            self.feasible = [d for d in feasible if self._sim.check(d, problem) is None]
        self.measured: dict[str, tuple[Deployment, list[LoadPoint]]] = {}
        self._prior_scores = self._score_all()
        self._scores = dict(self._prior_scores)

    # -- the API ------------------------------------------------------------------------
    @property
    def constants(self) -> Constants:
        """The simulator constants as currently fitted."""
        return self._constants(self._theta)

    def propose(self, n: int = 1) -> list[Deployment]:
        """Up to ``n`` feasible candidates not measured yet, best predicted first (empty
        when every feasible candidate has been measured)."""
        ranked = sorted(
            (d for d in self.feasible if d.key() not in self.measured),
            key=lambda d: (self._scores[d.key()], d.gpus()),
        )
        return ranked[:n]

    def observe(self, deployment: Deployment, points: Sequence[LoadPoint]) -> None:
        """Record a live trial's load points, refit the constants to every trial so far
        and re-price the space. A deployment observed before is ignored (measured once)."""
        key = deployment.key()
        if key in self.measured or not points:
            return
        self.measured[key] = (deployment, list(points))
        self._theta = self._fit()
        self._scores = self._score_all()
        log.debug("guided: %s", self.report().summary())

    def predict(self, deployment: Deployment, constants: Constants | None = None) -> list[LoadPoint]:
        """The simulator's load points for ``deployment`` (fitted constants by default)."""
        self._sim.constants = constants or self.constants
        return self._sim.measure(deployment, self.problem)

    def report(self) -> GuidanceReport:
        """Where the constants moved and the simulator's error on the measured trials."""
        fitted = self.constants
        consts = {n: (getattr(self.prior, n), getattr(fitted, n)) for n in self.names}
        moved = [
            abs(self._scores[k][1] / p[1] - 1.0)
            for k, p in self._prior_scores.items()
            if p[1] < 0 and self._scores[k][1] < 0
        ]
        return GuidanceReport(
            measured=len(self.measured),
            constants=consts,
            error_before=self._error(self.prior),
            error_after=self._error(fitted),
            moved=float(np.median(moved)) if moved else 0.0,
        )

    # -- internals ------------------------------------------------------------------------
    def _constants(self, theta: np.ndarray) -> Constants:
        values = {}
        for name, t in zip(self.names, theta, strict=True):
            value = getattr(self.prior, name) * math.exp(float(t))
            if name.startswith(("hbm_efficiency", "gemm_compute_efficiency")):
                value = min(value, 1.0)
            if name == "moe_imbalance":
                value = max(value, 1.0)
            values[name] = value
        return replace(self.prior, **values)

    def _score_all(self) -> dict[str, tuple[float, float]]:
        """(violation, -objective) per feasible candidate: sort key, smaller is better."""
        out = {}
        objective = get_objective(self.objective)
        self._sim.constants = self.constants
        for d in self.feasible:
            values, violation = objective.values(self._sim.measure(d, self.problem), self.sla)
            out[d.key()] = objective.rank_key(values, violation)
        return out

    def _residuals(self, theta: np.ndarray) -> np.ndarray:
        self._sim.constants = self._constants(theta)
        out: list[float] = []
        for dep, points in self.measured.values():
            predicted = {p.load_key: p for p in self._sim.measure(dep, self.problem)}
            for m in points:
                p = predicted.get(m.load_key)
                if p is None:
                    continue
                out.extend(math.log(max(getattr(p, k), 1e-9) / max(getattr(m, k), 1e-9)) for k in FIT_METRICS)
        return np.array(out + list(PRIOR_WEIGHT * theta))

    def _fit(self, iterations: int = 12) -> np.ndarray:
        """Levenberg-Marquardt on the log-multipliers, from the last fit (finite differences)."""
        theta, damping, bound = self._theta.copy(), 1e-2, math.log(MAX_MOVE)
        r = self._residuals(theta)
        for _ in range(iterations):
            jac = np.empty((r.size, theta.size))
            for i in range(theta.size):
                step = np.zeros_like(theta)
                step[i] = 1e-4
                jac[:, i] = (self._residuals(theta + step) - r) / 1e-4
            grad, hess = jac.T @ r, jac.T @ jac
            delta = np.linalg.solve(hess + damping * np.diag(np.diag(hess) + 1e-9), -grad)
            trial = np.clip(theta + delta, -bound, bound)
            r_trial = self._residuals(trial)
            if r_trial @ r_trial < r @ r:
                theta, r, damping = trial, r_trial, damping / 3
                if np.abs(delta).max() < 1e-4:
                    break
            else:
                damping *= 10
        return theta

    def _error(self, constants: Constants) -> float:
        errors: list[float] = []
        for dep, points in self.measured.values():
            predicted = {p.load_key: p for p in self.predict(dep, constants)}
            errors.extend(
                abs(predicted[m.load_key].tok_s_gpu / m.tok_s_gpu - 1.0)
                for m in points
                if m.load_key in predicted and m.tok_s_gpu > 0
            )
        return float(np.median(errors)) if errors else 0.0


class GuidedProposer:
    """A :class:`GuidedSearch` as a proposer: the best predicted candidate not tried yet,
    except every ``SAMPLER_EVERY``-th trial, which is the sampler's own draw (exploration the
    simulator cannot rank). After each measured trial the guide is refitted to it; a
    resumed run replays the stored trials first (:meth:`start`)."""

    name = "guided"
    #: One trial in this many is left to the Optuna sampler.
    SAMPLER_EVERY = 4
    #: A topology (label) that failed this often is not proposed again: live failures
    #: (out of memory, a layout the engine rejects) usually follow the layout, not the knobs.
    FAILURES_PER_LABEL = 2

    def __init__(self, guide: GuidedSearch) -> None:
        self.guide = guide
        self._trials = 0
        self._tried: set[str] = set()  # proposed or run: a failed candidate is not proposed again
        self._failures: dict[str, int] = {}  # label -> failed trials

    def start(self, measured: Sequence[tuple[Deployment, Sequence[LoadPoint]]]) -> None:
        """Observe what a previous run measured."""
        for deployment, points in measured:
            self.guide.observe(deployment, points)

    def propose(self, measured: Collection[str] = ()) -> Deployment | None:
        if self._trials % self.SAMPLER_EVERY == self.SAMPLER_EVERY - 1:
            return None  # the sampler's turn
        for deployment in self.guide.propose(len(self.guide.feasible)):
            if deployment.key() in self._tried:
                continue
            if self._failures.get(deployment.label(), 0) < self.FAILURES_PER_LABEL:
                self._tried.add(deployment.key())
                return deployment
        return None

    def observe(self, outcome: TrialOutcome) -> None:
        self.record(
            outcome.deployment, outcome.points, outcome.state == "measured", outcome.state == "failed"
        )

    def record(
        self, deployment: Deployment | None, points: Sequence[LoadPoint], measured: bool, failed: bool = False
    ) -> None:
        """Refit on a measured trial, count a failed one."""
        self._trials += 1
        if deployment is not None:
            self._tried.add(deployment.key())
            if failed:
                label = deployment.label()
                self._failures[label] = self._failures.get(label, 0) + 1
        if measured and deployment is not None:
            self.guide.observe(deployment, points)


class GuidedQueue:
    """Feeds a study's queue from a :class:`GuidedProposer`, for a caller that runs the
    study itself: after each trial the next proposal is enqueued (nothing while a trial is
    queued already or the budget is finished)."""

    SAMPLER_EVERY = GuidedProposer.SAMPLER_EVERY
    FAILURES_PER_LABEL = GuidedProposer.FAILURES_PER_LABEL

    def __init__(self, guide: GuidedSearch, study: Any, space: SearchSpace, budget: int) -> None:
        self.guide, self.study, self.space, self.budget = guide, study, space, budget
        self.proposer = GuidedProposer(guide)

    def start(self, measured: Sequence[tuple[Deployment, Sequence[LoadPoint]]]) -> None:
        """Observe what a previous run measured, then queue the first proposal."""
        self.proposer.start(measured)
        self._enqueue()

    def after_trial(
        self, deployment: Deployment | None, points: Sequence[LoadPoint], measured: bool, failed: bool = False
    ) -> None:
        """Refit on a measured trial, count a failed one, queue the next proposal."""
        self.proposer.record(deployment, points, measured, failed)
        self._enqueue()

    def _enqueue(self) -> None:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return  # a retry or an earlier proposal is still queued
        if sum(t.state.is_finished() for t in trials) >= self.budget:
            return  # the study is done: leave nothing queued behind
        deployment = self.proposer.propose()
        if deployment is not None:
            self.study.enqueue_trial(self.space.params(deployment), skip_if_exists=False)
