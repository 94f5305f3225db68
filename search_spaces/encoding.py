"""The Optuna encoding of a search space: suggest, params (its inverse) and enumeration.

One function, :func:`_build`, turns a sequence of categorical picks into a deployment;
``suggest`` feeds it an Optuna trial, ``candidates`` walks every branch of it, ``params``
inverts it. Keeping one builder keeps the three in agreement.

The encoding, and why:

- Every parameter is ``trial.suggest_categorical`` over the space's list, in ascending order
  (powers of two are ordered choices, read as the real value, so enqueued params and the
  trial table show ``decode.tp = 8``, not an index). A parameter name always has the same
  choices, whatever the other draws: Optuna's TPE, NSGA-II and GP samplers model each name
  as one distribution and misbehave when it changes between trials.
- The space is conditional: ``mode`` first, then the ``agg.*`` parameters or the
  ``prefill.*`` and ``decode.*`` ones. Shared knobs (``kv_cache_dtype``, ...) are one draw
  for every role. A dimension with a single choice is a constant, not a parameter.
- Worker counts may be the symbol ``max``: agg fills the GPU budget with replicas, decode
  fills what the prefill pool leaves. The choice stays the same symbol in every trial; only
  its meaning is derived from the problem, so the sampled point stays within the budget
  whenever one worker fits. Everything else over budget is left to the constraints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from serving import ConfigError, Deployment, EngineKnobs, Parallelism, Problem, WorkerGroup

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

    from .space import RoleSpace, SearchSpace

__all__ = ["candidates", "params", "suggest"]

#: ``pick(name, choices) -> one of choices``: an Optuna trial, a walker or a fixed dict.
Pick = Callable[[str, Sequence[Any]], Any]
_SHARED = ("kv_cache_dtype", "enable_chunked_prefill", "gpu_memory_utilization")
# Symbols, repeated from space.py to avoid an import cycle (space imports this module).
_EP_ALL = "all"
_COUNT_MAX = "max"


def suggest(space: SearchSpace, trial: BaseTrial, problem: Problem) -> Deployment:
    """Draw a deployment with ``trial.suggest_categorical``; never raises for a valid space."""
    return _build(space, problem, lambda name, choices: trial.suggest_categorical(name, list(choices)))


def candidates(space: SearchSpace, problem: Problem) -> Iterator[Deployment]:
    """Every distinct deployment the space can suggest for ``problem``, in lexicographic
    order of the choices, each once (different params may build the same deployment, e.g.
    ``count: max`` and ``count: 1`` for a worker that fills the budget)."""
    seen: set[str] = set()
    for deployment in _walk(lambda pick: _build(space, problem, pick)):
        key = deployment.key()
        if key not in seen:
            seen.add(key)
            yield deployment


def params(space: SearchSpace, deployment: Deployment) -> dict[str, Any]:
    """The params with which :func:`suggest` rebuilds ``deployment`` exactly.

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
        put(f"{role}.tp", rs.tp, par.tp)
        put(f"{role}.dp", rs.dp, par.dp)
        put(f"{role}.pp", rs.pp, par.pp)
        ep_choice: Any = 1 if par.ep == 1 and 1 in rs.ep else _EP_ALL if par.ep == par.tp * par.dp else par.ep
        put(f"{role}.ep", rs.ep, ep_choice)
        count: Any = group.count if group.count in rs.count or _COUNT_MAX not in rs.count else _COUNT_MAX
        put(f"{role}.count", rs.count, count)
        put(f"{role}.max_num_seqs", rs.max_num_seqs, group.knobs.max_num_seqs)
        put(f"{role}.max_num_batched_tokens", rs.max_num_batched_tokens, group.knobs.max_num_batched_tokens)
    return out


# -- the one builder ---------------------------------------------------------------------
def _build(space: SearchSpace, problem: Problem, pick: Pick) -> Deployment:
    def choose(name: str, choices: Sequence[Any]) -> Any:
        return choices[0] if len(choices) == 1 else pick(name, choices)

    mode = choose("mode", space.modes)
    shared = {knob: choose(knob, getattr(space, knob)) for knob in _SHARED}
    if mode == "agg":
        par, knobs = _role(space.agg, "agg", choose, shared)
        count = _count(choose("agg.count", space.agg.count), free=problem.gpus, worker=par.gpus)
        return Deployment(mode="agg", agg=WorkerGroup(par, count, knobs))
    p_par, p_knobs = _role(space.prefill, "prefill", choose, shared)
    prefill = WorkerGroup(p_par, choose("prefill.count", space.prefill.count), p_knobs)
    d_par, d_knobs = _role(space.decode, "decode", choose, shared)
    d_count = _count(
        choose("decode.count", space.decode.count), free=problem.gpus - prefill.gpus, worker=d_par.gpus
    )
    return Deployment(mode="disagg", prefill=prefill, decode=WorkerGroup(d_par, d_count, d_knobs))


def _role(rs: RoleSpace, role: str, choose: Pick, shared: dict[str, Any]) -> tuple[Parallelism, EngineKnobs]:
    tp, dp, pp = choose(f"{role}.tp", rs.tp), choose(f"{role}.dp", rs.dp), choose(f"{role}.pp", rs.pp)
    ep = tp * dp if choose(f"{role}.ep", rs.ep) == _EP_ALL else 1
    knobs = EngineKnobs(
        max_num_seqs=choose(f"{role}.max_num_seqs", rs.max_num_seqs),
        max_num_batched_tokens=choose(f"{role}.max_num_batched_tokens", rs.max_num_batched_tokens),
        **shared,
    )
    return Parallelism(tp=tp, dp=dp, pp=pp, ep=ep), knobs


def _count(choice: Any, *, free: int, worker: int) -> int:
    """A listed count, or for ``max`` the most workers that fit in ``free`` GPUs (at least
    one: a worker larger than the budget is the gpu_budget constraint's to reject)."""
    return max(1, free // worker) if choice == _COUNT_MAX else cast(int, choice)


# -- enumeration ------------------------------------------------------------------------
class _Replay:
    """A pick that follows a prefix of choice indices, then takes the first choice, and
    records the (index, number of choices) of every pick it made."""

    def __init__(self, prefix: tuple[int, ...]) -> None:
        self.prefix = prefix
        self.taken: list[tuple[int, int]] = []

    def __call__(self, name: str, choices: Sequence[Any]) -> Any:
        i = len(self.taken)
        index = self.prefix[i] if i < len(self.prefix) else 0
        self.taken.append((index, len(choices)))
        return choices[index]


def _walk(build: Callable[[Pick], Deployment]) -> Iterator[Deployment]:
    """Depth-first over the tree of picks: each leaf (complete set of picks) once, which
    also covers conditional branches without knowing their structure."""
    pending: list[tuple[int, ...]] = [()]
    while pending:
        replay = _Replay(pending.pop())
        yield build(replay)
        chosen = tuple(index for index, _ in replay.taken)
        # Siblings of every pick made past the prefix; pushed so the deepest pops first.
        for pos in range(len(replay.prefix), len(replay.taken)):
            for alt in reversed(range(1, replay.taken[pos][1])):
                pending.append((*chosen[:pos], alt))
