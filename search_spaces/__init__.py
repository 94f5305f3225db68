"""What to try: search spaces of serving deployments, their Optuna encoding and constraints.

A :class:`SearchSpace` is loaded once from a YAML preset (``search_spaces/presets/``) or
file plus overrides; ``space.suggest(trial, problem)`` draws a :class:`serving.Deployment`,
``space.params(deployment)`` inverts it for ``study.enqueue_trial``, and
``space.candidates(problem)`` enumerates the whole space. :func:`infeasible_reason` says
statically why a deployment cannot run (GPU budget, NVLink domain, head and expert
divisibility, vLLM's EP rule, memory fit) so the study rejects it before measuring.

Uses only :mod:`serving`; Optuna is needed only by the caller that passes a trial.
"""

from .constraints import CONSTRAINTS, Feasibility, count_feasible, infeasible_reason, nvlink_domain
from .loader import load_space, preset_names
from .space import COUNT_MAX, EP_ALL, MODES, RoleSpace, SearchSpace, parse_space

__all__ = [
    "CONSTRAINTS",
    "COUNT_MAX",
    "EP_ALL",
    "MODES",
    "Feasibility",
    "RoleSpace",
    "SearchSpace",
    "count_feasible",
    "infeasible_reason",
    "load_space",
    "nvlink_domain",
    "parse_space",
    "preset_names",
]
