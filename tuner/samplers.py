"""Optuna samplers by name.

The SLA enters as a trial constraint (``Trial.set_constraint``, Optuna 5), which the
TPE, NSGA-II and GP samplers read from storage: no constraints function to wire.
"""

from __future__ import annotations

import importlib.util
import warnings

import optuna

from .errors import ConfigError

__all__ = ["CONSTRAINT_ATTR", "make_sampler"]

#: Constraint key (and user attribute) of a trial's SLA violation; <= 0 means feasible.
CONSTRAINT_ATTR = "sla_violation"


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
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=10)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("scipy") is None:
            raise ConfigError("study.sampler", name, "the gp sampler needs torch and scipy: pip install torch scipy")
        return optuna.samplers.GPSampler(seed=seed)
    if name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError("study.sampler", name, "allowed: tpe, nsga2, gp, random, grid")
