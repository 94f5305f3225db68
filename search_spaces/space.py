"""The search space: which deployments to try, parsed and validated once from YAML.

A :class:`SearchSpace` is a frozen value: lists of choices per dimension, nothing else. How
those choices become Optuna parameters lives in :mod:`search_spaces.encoding`; which of the
resulting deployments can run at all lives in :mod:`search_spaces.constraints`.

YAML keys equal the dataclass field names. Every error is a :class:`serving.ConfigError` whose
field reads ``search_space.<key>`` (``search_space.decode.tp`` for a role's dimension).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from serving import ConfigError, Deployment, EngineKnobs, Problem
from serving.deployment import ROLES
from serving.precision import KV_DTYPES

from . import encoding

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

__all__ = ["COUNT_MAX", "EP_ALL", "MODES", "RoleSpace", "SearchSpace", "parse_space"]

#: Deployment modes a space may contain.
MODES = ("agg", "disagg")
#: Symbolic ``ep`` choice: expert parallel over the whole worker, EP = tp * dp. vLLM's
#: ``--enable-expert-parallel`` offers exactly this or no EP (EP = 1), nothing in between.
EP_ALL = "all"
#: Symbolic ``count`` choice: as many workers as the GPU budget leaves room for (agg: the
#: budget over the worker size; decode: what the prefill pool leaves). Derived per trial
#: from the problem, so the Optuna distribution itself never changes.
COUNT_MAX = "max"

_PREFIX = "search_space"
_KNOB_DEFAULTS = EngineKnobs()

IntChoice = int | str  # a positive integer or one of the symbols above


@dataclass(frozen=True)
class RoleSpace:
    """Choices for one worker role (``agg``, ``prefill`` or ``decode``).

    ``tp``/``dp`` are powers of two (attention heads, KV heads and experts are powers of two
    in every catalog model, so other sizes would only add infeasible points); ``ep`` holds
    ``1`` and/or ``"all"``; ``count`` is the worker count (for disagg, prefill and decode
    counts together are the P:D ratio) and may hold ``"max"`` for agg and decode.
    """

    tp: tuple[int, ...] = (1, 2, 4, 8)
    dp: tuple[int, ...] = (1,)
    pp: tuple[int, ...] = (1,)
    ep: tuple[IntChoice, ...] = (1,)
    count: tuple[IntChoice, ...] = (1,)
    max_num_seqs: tuple[int, ...] = (_KNOB_DEFAULTS.max_num_seqs,)
    max_num_batched_tokens: tuple[int, ...] = (_KNOB_DEFAULTS.max_num_batched_tokens,)

    def to_dict(self) -> dict[str, list[Any]]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class SearchSpace:
    """Every dimension of the deployment search, one tuple of choices each.

    ``kv_cache_dtype``, ``enable_chunked_prefill`` and ``gpu_memory_utilization`` are drawn
    once per candidate and shared by all its roles (prefill and decode must agree on the KV
    dtype for the KV transfer). Build one with :func:`search_spaces.load_space`.
    """

    modes: tuple[str, ...] = MODES
    agg: RoleSpace = field(default_factory=RoleSpace)
    prefill: RoleSpace = field(default_factory=RoleSpace)
    decode: RoleSpace = field(default_factory=RoleSpace)
    kv_cache_dtype: tuple[str, ...] = (_KNOB_DEFAULTS.kv_cache_dtype,)
    enable_chunked_prefill: tuple[bool, ...] = (_KNOB_DEFAULTS.enable_chunked_prefill,)
    gpu_memory_utilization: tuple[float, ...] = (_KNOB_DEFAULTS.gpu_memory_utilization,)
    description: str = ""

    def role(self, name: str) -> RoleSpace:
        """The choices of worker role ``name`` (``agg``, ``prefill`` or ``decode``)."""
        space: RoleSpace = getattr(self, name)
        return space

    def suggest(self, trial: BaseTrial, problem: Problem) -> Deployment:
        """Draw one deployment with ``trial.suggest_int``/``suggest_categorical``; its
        parameters are the deployed values (see :mod:`.encoding`)."""
        return encoding.suggest(self, trial, problem)

    def params(self, deployment: Deployment) -> dict[str, Any]:
        """Optuna params with which :meth:`suggest` reproduces ``deployment`` exactly, for
        ``study.enqueue_trial``. Raises ConfigError when ``deployment`` is not in the space."""
        return encoding.params(self, deployment)

    def ordered_params(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> listed values of each ordered dimension: a sampler snaps its
        integer draws to these so that a stored parameter is a deployed value."""
        return encoding.ordered_params(self)

    def candidates(self, problem: Problem) -> Iterator[Deployment]:
        """Every distinct deployment of the space for ``problem``, feasible or not."""
        return encoding.candidates(self, problem)

    def to_dict(self) -> dict[str, Any]:
        """The space as YAML-ready data; ``parse_space(space.to_dict())`` gives it back."""
        out: dict[str, Any] = {"modes": list(self.modes)}
        out.update({role: self.role(role).to_dict() for role in ROLES})
        for name in ("kv_cache_dtype", "enable_chunked_prefill", "gpu_memory_utilization"):
            out[name] = list(getattr(self, name))
        if self.description:
            out["description"] = self.description
        return out


# -- parsing -----------------------------------------------------------------------------
def parse_space(data: Any) -> SearchSpace:
    """Validate a mapping of search-space keys (as read from YAML) into a SearchSpace."""
    if not isinstance(data, Mapping):
        raise ConfigError(_PREFIX, data, "allowed: a mapping of search-space keys")
    allowed = [f.name for f in fields(SearchSpace)]
    _reject_unknown(data, allowed, _PREFIX)
    values: dict[str, Any] = {}
    if "modes" in data:
        values["modes"] = _choices(
            "modes", data["modes"], lambda v: v in MODES, f"a non-empty list of {', '.join(MODES)}"
        )
    for role in ROLES:
        if role in data:
            values[role] = _parse_role(role, data[role])
    if "kv_cache_dtype" in data:
        values["kv_cache_dtype"] = _choices(
            "kv_cache_dtype",
            data["kv_cache_dtype"],
            lambda v: v in KV_DTYPES,
            f"one or a list of {', '.join(KV_DTYPES)}",
        )
    if "enable_chunked_prefill" in data:
        values["enable_chunked_prefill"] = _choices(
            "enable_chunked_prefill",
            data["enable_chunked_prefill"],
            lambda v: isinstance(v, bool),
            "true, false or a list of them",
        )
    if "gpu_memory_utilization" in data:
        raw = data["gpu_memory_utilization"]
        items = raw if isinstance(raw, list) else [raw]
        values["gpu_memory_utilization"] = _choices(
            "gpu_memory_utilization",
            [float(v) if _is_number(v) else v for v in items],
            lambda v: isinstance(v, float) and 0.05 <= v <= 1.0,
            "a number in [0.05, 1.0] or a list of them",
        )
    if "description" in data:
        if not isinstance(data["description"], str):
            raise ConfigError(f"{_PREFIX}.description", data["description"], "allowed: a string")
        values["description"] = data["description"].strip()
    return SearchSpace(**values)


def _parse_role(role: str, data: Any) -> RoleSpace:
    where = f"{_PREFIX}.{role}"
    if not isinstance(data, Mapping):
        raise ConfigError(
            where, data, f"allowed: a mapping of {', '.join(f.name for f in fields(RoleSpace))}"
        )
    _reject_unknown(data, [f.name for f in fields(RoleSpace)], where)
    values: dict[str, tuple[Any, ...]] = {}
    for name, value in data.items():
        key = f"{role}.{name}"
        if name in ("tp", "dp"):
            values[name] = _int_list(key, value, power_of_two=True)
        elif name == "ep":
            values[name] = _int_list(key, value, symbols=(EP_ALL,), only=(1,))
        elif name == "count":
            symbols = () if role == "prefill" else (COUNT_MAX,)  # decode fills what prefill leaves
            values[name] = _int_list(key, value, symbols=symbols)
        else:  # pp, max_num_seqs, max_num_batched_tokens
            values[name] = _int_list(key, value)
    return RoleSpace(**values)


def _reject_unknown(data: Mapping[Any, Any], allowed: list[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", data[key], f"unknown key; allowed: {', '.join(allowed)}")


def _choices(name: str, value: Any, ok: Any, allowed: str) -> tuple[Any, ...]:
    """A scalar or a non-empty list without duplicates whose items all pass ``ok``."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(ok(v) for v in items) or _has_duplicates(items):
        raise ConfigError(f"{_PREFIX}.{name}", value, f"allowed: {allowed}, without duplicates")
    return tuple(items)


def _int_list(
    name: str,
    value: Any,
    *,
    power_of_two: bool = False,
    symbols: tuple[str, ...] = (),
    only: tuple[int, ...] = (),
) -> tuple[IntChoice, ...]:
    """A non-empty list of positive integers (powers of two, or only ``only``) and symbols,
    integers sorted ascending so that ordered categorical choices read small to large."""

    def ok(v: Any) -> bool:
        if isinstance(v, str):
            return v in symbols
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return False
        if only:
            return v in only
        return not power_of_two or v & (v - 1) == 0

    if not isinstance(value, list) or not value or not all(ok(v) for v in value) or _has_duplicates(value):
        kind = (
            " or ".join(str(v) for v in only)
            if only
            else "positive powers of two"
            if power_of_two
            else "positive integers"
        )
        extra = "".join(f" or '{s}'" for s in symbols)
        raise ConfigError(
            f"{_PREFIX}.{name}", value, f"allowed: a non-empty list of {kind}{extra}, without duplicates"
        )
    ints = sorted(v for v in value if not isinstance(v, str))
    return (*ints, *(v for v in value if isinstance(v, str)))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _has_duplicates(items: list[Any]) -> bool:
    seen: list[Any] = []
    for item in items:
        if any(item == s and type(item) is type(s) for s in seen):
            return True
        seen.append(item)
    return False
