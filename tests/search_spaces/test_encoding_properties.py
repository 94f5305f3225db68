"""Property-based tests of the encoding's invariant (hypothesis).

Invariant: whenever a space holds at least one deployment within the GPU budget whose
workers pass the per-worker static rules (``budget.plan(...).fits``), every deployment that
``suggest`` draws, from any parameter values a sampler may propose (including exponents the
choices skip), uses at most ``problem.gpus`` GPUs and its workers pass ``worker_reason``;
and ``params`` inverts ``suggest``.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import FixedTrial

from search_spaces import SearchSpace, parse_space
from search_spaces.budget import plan
from search_spaces.constraints import worker_reason
from serving import Problem

from .conftest import make_problem

_SETTINGS = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

_PROBLEM_KINDS = [
    ("Qwen3-32B", "H200", "bf16", 8),
    ("Llama-3.1-70B", "H100", "bf16", 8),
    ("Llama-3.1-8B", "H100", "bf16", 8),
    ("DeepSeek-R1", "GB200", "fp8", 4),
]
_PROBLEMS: dict[tuple[str, int], Problem] = {}


def _problem(kind: int, gpus: int) -> Problem:
    model, gpu, precision, per_node = _PROBLEM_KINDS[kind]
    if (model, gpus) not in _PROBLEMS:
        _PROBLEMS[model, gpus] = make_problem(
            model, gpu, precision=precision, gpus=gpus, gpus_per_node=min(per_node, gpus)
        )
    return _PROBLEMS[model, gpus]


def _subset(values: list[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)


@st.composite
def _role(draw: st.DrawFn, *, counts: list[Any]) -> dict[str, Any]:
    return {
        "tp": draw(_subset([1, 2, 4, 8, 16])),
        "dp": draw(_subset([1, 2, 4, 8, 32])),
        "ep": draw(_subset([1, "all"])),
        "count": draw(_subset(counts)),
        "max_num_seqs": draw(_subset([64, 128, 256, 512])),
    }


@st.composite
def _spaces(draw: st.DrawFn) -> SearchSpace:
    return parse_space(
        {
            "modes": draw(_subset(["agg", "disagg"])),
            "agg": draw(_role(counts=[1, 2, 3, "max"])),
            "prefill": draw(_role(counts=[1, 2, 3, 4, 6, 8])),
            "decode": draw(_role(counts=[1, 2, 4, "max"])),
            "kv_cache_dtype": draw(_subset(["auto", "fp8"])),
        }
    )


class _DrawnTrial:
    """A trial whose every suggestion hypothesis draws: any integer of an int range (also
    values the space skips) and any choice of a categorical."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> int:
        value: int = self._draw(st.integers(low, high), label=name)
        return value

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self._draw(st.sampled_from(choices), label=name)


@_SETTINGS
@given(
    space=_spaces(),
    kind=st.integers(0, len(_PROBLEM_KINDS) - 1),
    gpus=st.sampled_from([1, 2, 4, 8, 16, 32, 64]),
    data=st.data(),
)
def test_suggest_stays_within_the_budget_and_round_trips(
    space: SearchSpace, kind: int, gpus: int, data: st.DataObject
) -> None:
    problem = _problem(kind, gpus)
    deployment = space.suggest(_DrawnTrial(data.draw), problem)  # type: ignore[arg-type]
    if plan(space, problem).fits:
        assert deployment.gpus() <= problem.gpus, deployment.label()
        for role, group in deployment.groups().items():
            assert worker_reason(role, group, problem) is None
    assert space.suggest(FixedTrial(space.params(deployment)), problem) == deployment


@settings(max_examples=20, deadline=None, database=None)
@given(space=_spaces(), kind=st.integers(0, len(_PROBLEM_KINDS) - 1), gpus=st.sampled_from([2, 8, 16]))
def test_every_candidate_fits_and_round_trips(space: SearchSpace, kind: int, gpus: int) -> None:
    problem = _problem(kind, gpus)
    fits = plan(space, problem).fits
    for deployment in itertools.islice(space.candidates(problem), 200):  # keep the test fast
        assert not fits or deployment.gpus() <= problem.gpus, deployment.label()
        assert space.suggest(FixedTrial(space.params(deployment)), problem) == deployment
