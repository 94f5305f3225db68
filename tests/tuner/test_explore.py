"""Exploration after the sampler re-proposes measured deployments (tuner/explore.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pytest

import backends
from search_spaces import infeasible_reason, load_space
from serving import Deployment
from tuner.console import summary_line
from tuner.errors import ConfigError
from tuner.explore import Explorer, explorer_for
from tuner.sla import SLA
from tuner.spec import build_problem, load_spec
from tuner.study import EXPLORED_ATTR, load_measured, run_trials, summarize

from .conftest import small_spec


@pytest.fixture
def setting(tmp_path: Path):  # type: ignore[no-untyped-def]
    spec = load_spec(
        small_spec(
            tmp_path,
            search_space={"preset": "dense-single-node"},
            hardware={"gpu": "H100", "gpus": 8, "gpus_per_node": 8},
        )
    )
    problem = build_problem(spec)
    return load_space("dense-single-node"), problem, backends.create("simulator", {})


def feasible(space, problem, backend):  # type: ignore[no-untyped-def]
    return [
        d
        for d in space.candidates(problem)
        if infeasible_reason(d, problem) is None and backend.check(d, problem) is None
    ]


def test_due_after_consecutive_reproposals_only(setting) -> None:  # type: ignore[no-untyped-def]
    explorer = Explorer(*setting, seed=0, after=2)
    assert [explorer.due(s) for s in ("duplicate", "measured", "duplicate")] == [False, False, False]
    # Infeasible and busy asks neither count nor reset: the sampler did not repeat itself.
    assert explorer.due("infeasible") is False and explorer.due("busy") is False
    assert explorer.due("duplicate") is True  # the second in a row
    assert explorer.due("duplicate") is False  # the count starts again
    assert explorer.due("duplicate") is True


def test_choose_takes_the_least_measured_family(setting) -> None:  # type: ignore[no-untyped-def]
    space, problem, backend = setting
    pool = feasible(space, problem, backend)
    families = Counter(d.family() for d in pool)
    assert len(families) >= 3
    crowded = families.most_common(1)[0][0]
    measured = {d.key() for d in pool if d.family() == crowded}
    explorer = Explorer(space, problem, backend, seed=1)
    seen = set()
    for _ in range(len(families) - 1):  # every other family once before any twice
        d = explorer.choose(measured)
        assert d is not None and d.key() not in measured
        assert d.family() != crowded and d.family() not in seen
        seen.add(d.family())
        measured.add(d.key())
    assert explorer.choose({d.key() for d in pool}) is None  # nothing left to measure


def test_choose_is_seeded(setting) -> None:  # type: ignore[no-untyped-def]
    picks = [[Explorer(*setting, seed=s).choose(set()) for _ in range(3)] for s in (4, 4, 5)]
    assert picks[0] == picks[1] != picks[2]


def test_a_stuck_sampler_still_measures_new_families(setting) -> None:  # type: ignore[no-untyped-def]
    space, problem, backend = setting
    stuck = feasible(space, problem, backend)[0]
    sla = SLA(40)

    def run(explorer: Explorer | None) -> list[str]:
        sampler = optuna.samplers.PartialFixedSampler(
            space.params(stuck), optuna.samplers.RandomSampler(seed=0)
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        summary = run_trials(
            study,
            space=space,
            backend=backend,
            problem=problem,
            sla=sla,
            objective="sla",
            n_trials=30,
            explorer=explorer,
        )
        assert summary.explored == summarize(study).explored == (0 if explorer is None else 9)
        assert ("9 exploring other families" in summary_line(summary)) == (explorer is not None)
        # The 30th ask was a repeat that made an exploration due: nothing is left queued.
        assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))
        explored = [t for t in study.trials if EXPLORED_ATTR in t.user_attrs]
        assert len(explored) == (0 if explorer is None else 9)  # marked, with the family
        for t in explored:
            assert Deployment.from_dict(t.user_attrs["deployment"]).family() == t.user_attrs[EXPLORED_ATTR]
        return [m.deployment.family() for m in load_measured(study) if m.point.concurrency == 1]

    assert run(None) == [stuck.family()]  # the sampler repeats itself: one deployment measured
    explored = run(Explorer(space, problem, backend, seed=0, after=2))
    assert len(explored) == 10  # 1 + one exploration per two repeats of the 30 asks
    assert len(set(explored)) == 10  # each a family not measured before


def test_explore_after_zero_turns_it_off(setting) -> None:  # type: ignore[no-untyped-def]
    assert explorer_for(0, *setting, seed=0) is None
    assert isinstance(explorer_for(3, *setting, seed=0), Explorer)


@pytest.mark.parametrize("value", [-1, 1.5, "2", True])
def test_spec_rejects_bad_explore_after(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match=r"study\.explore_after"):
        load_spec(small_spec(tmp_path, study={"explore_after": value}))


def test_spec_explore_after_default_and_off(tmp_path: Path) -> None:
    assert load_spec(small_spec(tmp_path / "a")).study.explore_after == 2
    assert load_spec(small_spec(tmp_path / "b", study={"explore_after": 0})).study.explore_after == 0


def test_given_candidates_are_the_pool(setting) -> None:  # type: ignore[no-untyped-def]
    space, problem, backend = setting
    two = feasible(space, problem, backend)[:2]
    explorer = Explorer(space, problem, backend, seed=0, candidates=two)  # e.g. a screening's
    assert explorer.choose({two[0].key()}) == two[1]
    assert explorer.choose({d.key() for d in two}) is None
