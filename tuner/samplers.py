"""Optuna samplers by name.

The SLA enters as a trial constraint (``Trial.set_constraint``, Optuna 5), which the
TPE, NSGA-II and GP samplers read from storage: no constraints function to wire.

The default, TPE with ``multivariate`` and ``group`` and 10 random startup trials, is the
winner of ``benchmarks/search_efficiency.py`` (table and reproduction in docs/search.md):
fewest trials to within 2% of the exhaustive optimum on the 64-GPU MoE problem and the
highest hypervolume after 10% of the space among the samplers tried. ``group`` lets it
model the agg and disagg branches of the conditional space separately; NSGA-II and QMC
treat the branches' parameters independently, GP falls back to random sampling for them
and is two orders of magnitude slower per trial.
"""

from __future__ import annotations

import importlib.util
import warnings

import optuna

from .errors import ConfigError

__all__ = ["CONSTRAINT_ATTR", "DEFAULT_SAMPLER", "make_sampler"]

#: Constraint key (and user attribute) of a trial's SLA violation; <= 0 means feasible.
CONSTRAINT_ATTR = "sla_violation"
#: The spec's default ``study.sampler`` (see the module docstring for the evidence).
DEFAULT_SAMPLER = "tpe"
#: TPE's random startup trials: enough to see both branches of the space a few times.
TPE_STARTUP_TRIALS = 10


def make_sampler(name: str, *, seed: int) -> optuna.samplers.BaseSampler:
    """``tpe`` | ``nsga2`` | ``gp`` | ``random`` | ``grid``.

    ``grid`` is exhaustive: the study enqueues every feasible candidate and this random
    sampler only fills parameters an enqueued trial does not fix.
    """
    if name == "tpe":
        # multivariate + group: the space is conditional (agg and disagg branches); group
        # is flagged experimental by Optuna, which is not news to our users.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, n_startup_trials=TPE_STARTUP_TRIALS
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
