"""Optuna samplers by name.

The SLA enters as a trial constraint (``Trial.set_constraint``, Optuna 5), which the
TPE, NSGA-II and GP samplers read from storage: no constraints function to wire.

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

import optuna

from .errors import ConfigError
from .search.record import CONSTRAINT_KEY

__all__ = ["CONSTRAINT_ATTR", "DEFAULT_SAMPLER", "make_sampler", "tpe_startup_trials"]

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


def make_sampler(name: str, *, seed: int, candidates: int | None = None) -> optuna.samplers.BaseSampler:
    """``tpe`` | ``nsga2`` | ``gp`` | ``random`` | ``grid``.

    ``candidates``: the number of deployments of the search space for the problem
    (:func:`search_spaces.SearchSpace.candidates`), which sizes TPE's random startup.
    ``grid`` is exhaustive: the study enqueues every feasible candidate and this random
    sampler only fills parameters an enqueued trial does not fix.
    """
    if name == "tpe":
        # multivariate + group: the space is conditional (agg and disagg branches); group
        # is flagged experimental by Optuna, which is not news to our users. ``gamma`` is
        # deprecated since Optuna 4.9 (removal planned for 6.0, with no replacement yet):
        # when it goes, this falls back to Optuna's 10% and the benchmark must be rerun.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="`gamma` has been deprecated", category=FutureWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                n_startup_trials=tpe_startup_trials(candidates),
                gamma=tpe_gamma,
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("scipy") is None:
            raise ConfigError(
                "study.sampler", name, "the gp sampler needs torch and scipy: pip install torch scipy"
            )
        return optuna.samplers.GPSampler(seed=seed)
    if name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError("study.sampler", name, "allowed: tpe, nsga2, gp, random, grid")
