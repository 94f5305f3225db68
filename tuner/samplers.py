"""Optuna samplers by name, with the SLA constraint wired in where the sampler supports it."""

from __future__ import annotations

import importlib.util

import optuna
from optuna.trial import FrozenTrial

from .errors import ConfigError

__all__ = ["CONSTRAINT_ATTR", "make_sampler"]

#: User attribute holding a trial's SLA violation (<= 0 feasible), read by constraints_func.
CONSTRAINT_ATTR = "sla_violation"


def _constraints(trial: FrozenTrial) -> list[float]:
    return [float(trial.user_attrs.get(CONSTRAINT_ATTR, 0.0))]


def make_sampler(name: str, *, seed: int, constrained: bool) -> optuna.samplers.BaseSampler:
    """``tpe`` | ``nsga2`` | ``gp`` | ``random`` | ``grid``.

    ``grid`` is exhaustive: the study enqueues every feasible candidate and this random
    sampler only fills parameters an enqueued trial does not fix.
    """
    cf = _constraints if constrained else None
    if name == "tpe":
        # multivariate + group: the space is conditional (agg and disagg branches).
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constraints_func=cf, n_startup_trials=10
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=cf)
    if name == "gp":
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("scipy") is None:
            raise ConfigError("study.sampler", name, "the gp sampler needs torch and scipy: pip install torch scipy")
        return optuna.samplers.GPSampler(seed=seed, constraints_func=cf)
    if name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError("study.sampler", name, "allowed: tpe, nsga2, gp, random, grid")
