"""Optuna samplers by name.

The SLA enters as a trial constraint (``Trial.set_constraint``, Optuna 5), which the
TPE, NSGA-II and GP samplers read from storage. optuna-dashboard (up to its 2026-08 source)
reads only the older list form, the system attribute ``constraints`` that a sampler's
``constraints_func`` writes after each trial; TPE and NSGA-II get one
(:func:`published_constraint`) that repeats the stored violation there, so the dashboard
shows the SLA constraint and marks infeasible trials. Both forms hold the same value; the
samplers sum violations or compare them, so the repeat changes no ranking. GP is left
without it (it would model the one constraint twice); with ``random`` and ``grid`` the
dashboard shows no constraint.

Every sampler is wrapped in :class:`SnappingSampler`: an ordered dimension is an integer
range (``suggest_int(..., log=True)``, :mod:`search_spaces.encoding`), and the wrapper snaps
each draw to the listed value the deployment will use before Optuna stores it, so a
trial's parameters are exactly the deployed values.

The default, TPE with ``multivariate`` and ``group``, random startup trials sized to the
space (10-20, :func:`tpe_startup_trials`) and a wider "good" fraction (``gamma``: 25% of
the trials, at most 25, instead of Optuna's 10%), is the winner of
``benchmarks/search_efficiency.py`` (table and reproduction in docs/search.md) on the 64-GPU
MoE problem, with the study loop's exploration (:mod:`tuner.explore`) that every sampler
gets: fewest trials to within 2% of the exhaustive optimum at the loose SLA (at the tight
one NSGA-II and random tie with it and QMC needs fewer) and the highest hypervolume after
10% of the space at both SLAs among the samplers tried. ``group`` lets it model the agg
and disagg branches of the conditional space separately; NSGA-II and QMC treat the
branches' parameters independently, GP falls back to random sampling for them and is two
orders of magnitude slower per trial.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from search_spaces.encoding import snap

from .errors import ConfigError
from .search.record import CONSTRAINT_KEY

__all__ = [
    "CONSTRAINT_ATTR",
    "DEFAULT_SAMPLER",
    "SnappingSampler",
    "make_sampler",
    "published_constraint",
    "tpe_startup_trials",
]

#: Constraint key (and user attribute) of a trial's SLA violation; <= 0 means feasible.
CONSTRAINT_ATTR = CONSTRAINT_KEY
#: The spec's default ``study.sampler`` (see the module docstring for the evidence).
DEFAULT_SAMPLER = "tpe"
#: TPE's random startup trials scale with the space: 1.5% of its candidates, at least 10
#: (Optuna's default), at most 20. Random trials are what TPE learns from before it narrows
#: down; a larger space has more layout families to see first, a small one pays for every
#: random trial in a larger share of its budget. Measured with
#: benchmarks/search_efficiency.py (docs/search.md): on the dense spaces (336 and 648
#: candidates) 10 instead of 20 lowered the geometric mean of trials to 2% of the optimum by
#: 4-21% on all four problems (40 seeds, simulator before its third refit) and was neutral,
#: within 7%, after that refit (30 seeds). On the MoE space (1,338 candidates, 10 seeds) 20
#: is kept: 10 needed more trials at the loose SLA (median 77 vs 68.5, geometric mean 69 vs
#: 57) and fewer at the tight one (12.5 vs 24); with 10 startup trials and Optuna's 10%
#: gamma TPE had locked onto the first good family at the tight SLA.
TPE_STARTUP_SHARE = 0.015
TPE_STARTUP_MIN = 10
TPE_STARTUP_MAX = 20
#: Share of the trials TPE models as "good" (Optuna's default is 10%, at most 25). With 10%
#: the good density of the MoE space rests on 2-3 trials after 20-30 trials and TPE keeps
#: re-proposing one family (mostly duplicates); 25% keeps the runner-up families in the good
#: density. Screened with benchmarks/search_efficiency.py on the MoE problem (3-4 seeds,
#: together with 20 startup trials): HV after 10% of the space at the tight SLA 94.8% ->
#: 97.4%, trials to 2% about equal; the 10-seed table is in docs/search.md.
TPE_GOOD_FRACTION = 0.25
TPE_GOOD_MAX = 25


def tpe_startup_trials(candidates: int | None) -> int:
    """TPE's random startup trials for a space of ``candidates`` deployments (the most when
    the size is not known); see ``TPE_STARTUP_SHARE``."""
    if candidates is None:
        return TPE_STARTUP_MAX
    return min(TPE_STARTUP_MAX, max(TPE_STARTUP_MIN, round(TPE_STARTUP_SHARE * candidates)))


def tpe_gamma(n: int) -> int:
    """TPE's number of "good" trials out of ``n`` finished ones (see ``TPE_GOOD_FRACTION``)."""
    return min(math.ceil(TPE_GOOD_FRACTION * n), TPE_GOOD_MAX)


def make_sampler(
    name: str,
    *,
    seed: int,
    candidates: int | None = None,
    snapped: Mapping[str, Sequence[int]] | None = None,
) -> optuna.samplers.BaseSampler:
    """``tpe`` | ``nsga2`` | ``gp`` | ``random`` | ``grid``, wrapped in a
    :class:`SnappingSampler` over ``snapped`` (:meth:`search_spaces.SearchSpace.ordered_params`).

    ``candidates``: the number of deployments of the search space for the problem
    (:func:`search_spaces.SearchSpace.candidates`), which sizes TPE's random startup.
    ``grid`` is exhaustive: the study enqueues every feasible candidate and this random
    sampler only fills parameters an enqueued trial does not fix.
    """
    return SnappingSampler(_base_sampler(name, seed=seed, candidates=candidates), snapped or {})


def _base_sampler(name: str, *, seed: int, candidates: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # multivariate + group: the space is conditional (agg and disagg branches); group
        # is flagged experimental by Optuna, which is not news to our users. ``gamma`` is
        # deprecated since Optuna 4.9 (removal planned for 6.0, with no replacement yet):
        # when it goes, this falls back to Optuna's 10% and the benchmark must be rerun.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="`gamma` has been deprecated", category=FutureWarning)
            _allow_constraints_func()
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                n_startup_trials=tpe_startup_trials(candidates),
                gamma=tpe_gamma,
                constraints_func=published_constraint,
            )
    if name == "nsga2":
        with warnings.catch_warnings():
            _allow_constraints_func()
            return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=published_constraint)
    if name == "gp":
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("scipy") is None:
            raise ConfigError(
                "study.sampler", name, "the gp sampler needs torch and scipy: pip install torch scipy"
            )
        return optuna.samplers.GPSampler(seed=seed)
    if name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError("study.sampler", name, "allowed: tpe, nsga2, gp, random, grid")


def _allow_constraints_func() -> None:
    # ``constraints_func`` is deprecated since Optuna 5.0 (removal planned for 7.0) in
    # favour of Trial.set_constraint, which the study uses; it stays only to publish the
    # list form optuna-dashboard reads (see the module docstring). When it goes, the
    # dashboard loses the constraint column, the samplers lose nothing.
    warnings.filterwarnings("ignore", message=".*constraints_func.*", category=FutureWarning)


def published_constraint(trial: FrozenTrial) -> Sequence[float]:
    """The trial's stored SLA violation as a one-item constraint list, or none when the
    trial has no violation (a PRUNED trial that was never measured)."""
    violation = trial.constraints.get(CONSTRAINT_KEY)
    return () if violation is None else (violation,)


class SnappingSampler(BaseSampler):
    """``base``, with each draw of a parameter in ``snapped`` (an integer range) moved to the
    nearest listed value before it is stored (:func:`search_spaces.encoding.snap`).
    Everything else is ``base``'s, as with :class:`optuna.samplers.PartialFixedSampler`."""

    def __init__(self, base: BaseSampler, snapped: Mapping[str, Sequence[int]]) -> None:
        self.base = base
        self._snapped = {name: tuple(values) for name, values in snapped.items()}

    def _snap(self, name: str, distribution: BaseDistribution, value: Any) -> Any:
        values = self._snapped.get(name)
        if values is None or not isinstance(distribution, IntDistribution):
            return value
        return snap(int(value), values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        drawn = self.base.sample_relative(study, trial, search_space)
        return {name: self._snap(name, search_space[name], value) for name, value in drawn.items()}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        value = self.base.sample_independent(study, trial, param_name, param_distribution)
        return self._snap(param_name, param_distribution, value)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.base.after_trial(study, trial, state, values)
