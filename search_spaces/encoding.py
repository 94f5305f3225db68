"""The Optuna encoding of a search space: suggest, params (its inverse) and enumeration.

One function, :func:`_build`, turns a sequence of picks into a deployment; ``suggest`` feeds
it an Optuna trial, ``candidates`` walks every branch of it, ``params`` inverts it. Keeping
one builder keeps the three in agreement.

The encoding, and why:

- Conditional space: ``mode`` first, then the ``agg.*`` parameters or the ``prefill.*`` and
  ``decode.*`` ones. Shared knobs (``kv_cache_dtype``, ...) are one draw for every role. A
  dimension with a single choice is a constant, not a parameter.
- Deployed values: a parameter's value is the value deployed (``decode.max_num_seqs: 64``
  runs ``--max-num-seqs 64``), so a study's parameters, importance and slice plots read in
  engine terms. An ordered dimension (tp, dp, pp, max_num_seqs, max_num_batched_tokens with
  more than one positive integer) is ``trial.suggest_int("<role>.<dim>", lo, hi, log=True)``
  over the listed range, so TPE, GP and QMC see that 8 lies between 4 and 16 (and treat
  powers of two evenly, in log space); a value the list skips snaps to the listed value
  nearest in log2 (the lower on ties). The tuner's samplers snap before the value is
  stored (:data:`snap` and ``tuner.samplers``), so a stored parameter is always a listed
  value. Other dimensions (counts, ep, the shared knobs) are ``suggest_categorical`` over
  the list.
- Within the GPU budget by construction (:mod:`search_spaces.budget`): the drawn worker
  layout snaps to the nearest layout that passes the per-worker static rules and leaves
  room for the rest of the deployment; worker counts are clipped to what the budget leaves
  (``max`` takes all of it; a listed count becomes the largest listed count that fits).
  Decode is drawn first, then prefill in what decode leaves, then the counts. The P:D ratio
  is thus a derived quantity and every point fits.
- Fixed distributions: a parameter name always has the same distribution in a study,
  whatever the other draws; the admissible layouts and caps depend only on the space and
  the problem, never on the trial, so Optuna's samplers can model each name.

Invariant (tested with hypothesis): whenever the space holds at least one deployment within
``problem.gpus`` whose workers pass the per-worker rules, every deployment ``suggest`` draws
or ``candidates`` yields uses at most ``problem.gpus`` GPUs and each of its workers passes
:func:`search_spaces.constraints.worker_reason`. Knob-dependent memory fit (KV cache for the
batch) is still :func:`search_spaces.infeasible_reason`'s to check.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from serving import ConfigError, Deployment, EngineKnobs, Problem, WorkerGroup

from .budget import Plan, Shape, min_count, plan

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

    from .space import RoleSpace, SearchSpace

__all__ = ["candidates", "ordered", "ordered_params", "param_name", "params", "snap", "suggest"]

#: ``pick(name, choices, ordered) -> one of choices``: an Optuna trial, a walker or a dict.
#: For an ordered pick, ``choices`` are ascending integers; a trial draws any integer between
#: the first and the last.
Pick = Callable[[str, Sequence[Any], bool], Any]
#: ``mark(state)``: told by the builder that what it builds from here on depends only on
#: ``state`` and the picks still to come (the enumeration skips a state it has walked).
Mark = Callable[[Hashable], None]
_SHARED = ("kv_cache_dtype", "enable_chunked_prefill", "gpu_memory_utilization")
_ORDERED_DIMS = ("tp", "dp", "pp", "max_num_seqs", "max_num_batched_tokens")
# Symbols, repeated from space.py to avoid an import cycle (space imports this module).
_EP_ALL = "all"
_COUNT_MAX = "max"


def ordered(choices: Sequence[Any]) -> bool:
    """Whether a dimension's choices are encoded as an ordered integer range (more than one
    choice, all positive integers; the parser sorts them ascending)."""
    return _ordered(tuple(choices))


@functools.cache
def _ordered(choices: tuple[Any, ...]) -> bool:
    return len(choices) > 1 and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in choices)


def param_name(role: str, dim: str, choices: Sequence[Any] = ()) -> str:
    """The Optuna parameter name of a role's dimension: ``decode.tp``, ``decode.count``."""
    return f"{role}.{dim}"


def snap(value: int, choices: Sequence[int]) -> int:
    """The listed choice nearest to ``value`` in log2 (the lower on ties)."""
    if value in choices:  # a listed value is its own nearest (distance 0, choices distinct)
        return value
    return min(choices, key=lambda c: (abs(math.log2(c) - math.log2(max(value, 1))), c))


def ordered_params(space: SearchSpace) -> dict[str, tuple[int, ...]]:
    """Parameter name -> listed values of every ordered dimension of ``space`` (what a
    sampler snaps its integer draws to)."""
    out: dict[str, tuple[int, ...]] = {}
    for role in ("agg", "prefill", "decode"):
        rs = space.role(role)
        for dim in _ORDERED_DIMS:
            choices = getattr(rs, dim)
            if ordered(choices):
                out[param_name(role, dim)] = tuple(choices)
    return out


def _trial_pick(trial: BaseTrial) -> Pick:
    def pick(name: str, choices: Sequence[Any], is_ordered: bool) -> Any:
        if is_ordered:
            return trial.suggest_int(name, choices[0], choices[-1], log=True)
        return trial.suggest_categorical(name, list(choices))

    return pick


def suggest(space: SearchSpace, trial: BaseTrial, problem: Problem) -> Deployment:
    """Draw a deployment with ``trial.suggest_int``/``suggest_categorical``; never raises
    for a valid space. See the module docstring for the invariant it keeps."""
    return _build(space, problem, plan(space, problem), _trial_pick(trial))


def candidates(space: SearchSpace, problem: Problem) -> Iterator[Deployment]:
    """Every distinct deployment the space can suggest for ``problem``, each once (different
    params may build the same deployment: a skipped exponent snaps to a listed one, a count
    clips to what the budget leaves). Within the budget under the encoding's invariant;
    other static constraints (memory for the batch) may still reject some."""
    seen: set[Deployment] = set()  # frozen values: equal deployments have equal keys
    layout = plan(space, problem)
    for deployment in _walk(lambda pick, mark: _build(space, problem, layout, pick, mark)):
        if deployment not in seen:
            seen.add(deployment)
            yield deployment


def params(space: SearchSpace, deployment: Deployment) -> dict[str, Any]:
    """The params with which :func:`suggest` rebuilds ``deployment`` exactly, for any
    deployment that suggest can draw (in particular every item of :func:`candidates`).

    Raises ConfigError naming the parameter when a value is not among the space's choices.
    A count that is not listed is taken to be the space's ``max`` (which a given problem
    resolves to that count, as it did when the deployment was suggested).
    """
    out: dict[str, Any] = {}

    def put(name: str, choices: Sequence[Any], value: Any) -> None:
        if not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
            raise ConfigError(f"search_space.{name}", value, f"not in the space; allowed: {list(choices)}")
        if len(choices) > 1:
            out[name] = value

    def put_dim(role: str, dim: str, choices: Sequence[Any], value: Any) -> None:
        put(param_name(role, dim), choices, value)

    put("mode", space.modes, deployment.mode)
    groups = deployment.groups()
    for knob in _SHARED:
        values = {getattr(g.knobs, knob) for g in groups.values()}
        if len(values) > 1:
            raise ConfigError(
                f"search_space.{knob}", sorted(values), "allowed: one value shared by every role"
            )
        put(knob, getattr(space, knob), values.pop())
    for role, group in groups.items():
        rs, par = space.role(role), group.parallel
        for dim in ("tp", "dp", "pp"):
            put_dim(role, dim, getattr(rs, dim), getattr(par, dim))
        ep_choice: Any = 1 if par.ep == 1 and 1 in rs.ep else _EP_ALL if par.ep == par.tp * par.dp else par.ep
        put(f"{role}.ep", rs.ep, ep_choice)
        count: Any = group.count if group.count in rs.count or _COUNT_MAX not in rs.count else _COUNT_MAX
        put(f"{role}.count", rs.count, count)
        put_dim(role, "max_num_seqs", rs.max_num_seqs, group.knobs.max_num_seqs)
        put_dim(role, "max_num_batched_tokens", rs.max_num_batched_tokens, group.knobs.max_num_batched_tokens)
    return out


# -- the one builder ---------------------------------------------------------------------
def _build(
    space: SearchSpace, problem: Problem, layout: Plan, pick: Pick, mark: Mark | None = None
) -> Deployment:
    def choose(name: str, choices: Sequence[Any]) -> Any:
        return choices[0] if len(choices) == 1 else pick(name, choices, False)

    mode = choose("mode", layout.modes)
    shared = {knob: choose(knob, getattr(space, knob)) for knob in _SHARED}
    budget = layout.budget if layout.fits else 1 << 62  # unclipped when nothing fits
    if mode == "agg":
        par = _shape(space.agg, "agg", layout.shapes["agg"], pick)
        if mark is not None:
            mark(("agg", tuple(shared.values()), par))
        knobs = _knobs(space.agg, "agg", pick, shared)
        count = _count(
            space.agg, choose("agg.count", space.agg.count), free=budget, worker=par.gpus, fill=problem.gpus
        )
        return Deployment(mode="agg", agg=WorkerGroup(par.parallel, count, knobs))
    p_min, d_min = min_count(space.prefill), min_count(space.decode)
    p_least = min((s.gpus * p_min for s in layout.shapes["prefill"]), default=0)
    d = _shape(space.decode, "decode", _within(layout.shapes["decode"], budget - p_least, d_min), pick)
    if mark is not None:
        mark(("decode", tuple(shared.values()), d))
    d_knobs = _knobs(space.decode, "decode", pick, shared)
    p = _shape(
        space.prefill, "prefill", _within(layout.shapes["prefill"], budget - d.gpus * d_min, p_min), pick
    )
    if mark is not None:
        mark(("prefill", tuple(shared.values()), d, d_knobs, p))
    p_knobs = _knobs(space.prefill, "prefill", pick, shared)
    p_count = _count(
        space.prefill,
        choose("prefill.count", space.prefill.count),
        free=budget - d.gpus * d_min,
        worker=p.gpus,
        fill=problem.gpus,
    )
    d_count = _count(
        space.decode,
        choose("decode.count", space.decode.count),
        free=budget - p_count * p.gpus,
        worker=d.gpus,
        fill=problem.gpus - p_count * p.gpus,
    )
    return Deployment(
        mode="disagg",
        prefill=WorkerGroup(p.parallel, p_count, p_knobs),
        decode=WorkerGroup(d.parallel, d_count, d_knobs),
    )


def _within(shapes: tuple[Shape, ...], free: int, least: int) -> tuple[Shape, ...]:
    """The layouts of which ``least`` workers fit in ``free`` GPUs (all, if none does)."""
    return tuple(s for s in shapes if s.gpus * least <= free) or shapes


def _value(role: str, dim: str, choices: Sequence[int], pick: Pick) -> int | None:
    """The drawn value of a dimension, snapped onto the listed ones, or None for a constant."""
    if len(choices) == 1:
        return None
    if ordered(choices):
        # A trial draws over the whole range (lowest to highest) and the value snaps to a
        # listed one; a walker picks only listed values.
        return snap(int(pick(param_name(role, dim), choices, True)), choices)
    return int(pick(param_name(role, dim), choices, False))


def _shape(rs: RoleSpace, role: str, shapes: tuple[Shape, ...], pick: Pick) -> Shape:
    """Draw tp, dp, pp and ep, then snap onto the nearest admissible layout: least summed
    log2 distance, a differing ep counting half a step; fewer GPUs, then the order of the
    choices, break ties. An admissible draw is kept as it is."""
    drawn: dict[str, float | None] = {}
    for dim in ("tp", "dp", "pp"):
        value = _value(role, dim, getattr(rs, dim), pick)
        drawn[dim] = None if value is None else math.log2(value)
    ep = pick(f"{role}.ep", rs.ep, False) if len(rs.ep) > 1 else rs.ep[0]

    def distance(shape: Shape) -> tuple[float, int]:
        par = shape.parallel
        d = sum(abs(v - math.log2(getattr(par, dim))) for dim, v in drawn.items() if v is not None)
        same_ep = shape.ep_symbol == ep or par.tp * par.dp == 1
        return d + (0.0 if same_ep else 0.5), shape.gpus

    return min(shapes, key=distance)


def _knobs(rs: RoleSpace, role: str, pick: Pick, shared: dict[str, Any]) -> EngineKnobs:
    values: dict[str, int] = {}
    for dim in ("max_num_seqs", "max_num_batched_tokens"):
        choices: tuple[int, ...] = getattr(rs, dim)
        value = _value(role, dim, choices, pick)
        values[dim] = choices[0] if value is None else value
    return EngineKnobs(
        max_num_seqs=values["max_num_seqs"],
        max_num_batched_tokens=values["max_num_batched_tokens"],
        **shared,
    )


def _count(rs: RoleSpace, choice: Any, *, free: int, worker: int, fill: int) -> int:
    """``max``: as many workers as fit in ``free`` GPUs; a listed count: itself if it fits,
    else the largest listed count that does, else what ``max`` would give. ``fill`` is the
    room ``max`` fills when nothing fits the budget (at least one worker)."""
    cap = free // worker
    if free >= 1 << 61:  # unclipped: no deployment of the space fits the budget
        return max(1, fill // worker) if choice == _COUNT_MAX else int(choice)
    if choice == _COUNT_MAX:
        return max(1, cap)
    fitting = [c for c in rs.count if not isinstance(c, str) and c <= cap]
    return int(choice) if choice <= cap else max(fitting) if fitting else max(1, cap)


# -- enumeration ------------------------------------------------------------------------
class _Walked(Exception):
    """Raised by :meth:`_Replay.mark` to stop a build whose state was walked before."""


class _Replay:
    """A pick that follows a prefix of choice indices, then takes the first choice, and
    records the (index, number of choices) of every pick it made. ``walked``: the builder's
    states (:data:`Mark`) met so far in the walk, shared by its replays."""

    def __init__(self, prefix: tuple[int, ...], walked: set[tuple[int, Hashable]]) -> None:
        self.prefix = prefix
        self.taken: list[tuple[int, int]] = []
        self.walked = walked

    def mark(self, state: Hashable) -> None:
        """Stop the build (:class:`_Walked`) when an earlier replay reached ``state`` after
        as many picks. Only a state reached through a pick past the prefix is new to the
        walk: one reached within the prefix is the state of the replay that owned it."""
        if len(self.taken) < len(self.prefix):
            return
        key = (len(self.taken), state)
        if key in self.walked:
            raise _Walked
        self.walked.add(key)

    def __call__(self, name: str, choices: Sequence[Any], is_ordered: bool = False) -> Any:
        i = len(self.taken)
        index = self.prefix[i] if i < len(self.prefix) else 0
        self.taken.append((index, len(choices)))
        return choices[index]


def _walk(build: Callable[[Pick, Mark], Deployment]) -> Iterator[Deployment]:
    """Depth-first over the tree of picks: each leaf (complete set of picks) once, which
    also covers conditional branches without knowing their structure.

    Leaves come in lexicographic order of their picks. Where the builder marks a state it
    has reached before after as many picks (:data:`Mark`: what it builds next depends on
    that state and the later picks only), the subtree below repeats one walked before,
    whose deployments all came earlier: it is skipped. So the deployments met for the
    first time, and their order, are those of the whole tree (the seed chart's 64-GPU
    space: 15,912 leaves walked, 1,338 deployments, before marks)."""
    pending: list[tuple[int, ...]] = [()]
    walked: set[tuple[int, Hashable]] = set()
    while pending:
        replay = _Replay(pending.pop(), walked)
        try:
            deployment: Deployment | None = build(replay, replay.mark)
        except _Walked:
            deployment = None  # the picks made before the mark still have their siblings
        if deployment is not None:
            yield deployment
        chosen = tuple(index for index, _ in replay.taken)
        # Siblings of every pick made past the prefix; pushed so the deepest pops first.
        for pos in range(len(replay.prefix), len(replay.taken)):
            for alt in reversed(range(1, replay.taken[pos][1])):
                pending.append((*chosen[:pos], alt))
