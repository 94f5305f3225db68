"""The search package: the task's feasible set, the run mode, proposers asked in order."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import optuna
import pytest

import backends
from search_spaces import infeasible_reason, load_space
from serving import Deployment
from tuner.runs import tune
from tuner.search import QueueProposer, Task, TrialOutcome, TrialRecord
from tuner.search.loop import TrialLoop
from tuner.search.strategy import RunMode
from tuner.sla import SLA
from tuner.spec import build_problem, load_spec

from .conftest import small_spec


@pytest.fixture
def task(tmp_path: Path) -> Task:
    spec = load_spec(small_spec(tmp_path))
    return Task(
        problem=build_problem(spec),
        space=load_space("small"),
        backend=backends.create("simulator"),
        sla=SLA(40),
    )


def test_feasible_set_is_the_one_filter_and_computed_once(
    task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = [
        d
        for d in task.space.candidates(task.problem)
        if infeasible_reason(d, task.problem) is None and task.backend.check(d, task.problem) is None
    ]
    assert list(task.feasible.deployments) == expected
    assert task.feasible.candidates == sum(1 for _ in task.space.candidates(task.problem))
    assert task.feasible.candidates == len(expected) + sum(task.feasible.infeasible.values())
    monkeypatch.setattr(type(task.space), "candidates", lambda *a: pytest.fail("enumerated twice"))
    assert list(task.feasible.deployments) == expected  # kept


class Recorder:
    """A proposer that proposes a fixed deployment once and records what it observes."""

    def __init__(self, name: str, deployment: Deployment | None) -> None:
        self.name, self.deployment = name, deployment
        self.seen: list[TrialOutcome] = []

    def propose(self, measured: Collection[str]) -> Deployment | None:
        out, self.deployment = self.deployment, None
        return out

    def observe(self, outcome: TrialOutcome) -> None:
        self.seen.append(outcome)


def test_proposers_are_asked_in_order_before_the_sampler(task: Task) -> None:
    first, second = task.feasible.deployments[:2]
    a, b = Recorder("a", None), Recorder("b", second)
    grid = QueueProposer("grid", [first])
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    TrialLoop(study, task, proposers=[grid, a, b]).run(3)
    deps = [TrialRecord.of(t).deployment for t in study.trials]
    assert deps[:2] == [first, second]  # the grid's, then b's (a had nothing)
    assert len(a.seen) == len(b.seen) == 3  # every proposer observes every trial
    assert [o.deployment for o in b.seen[:2]] == [first, second]


def test_run_mode_is_chosen_once(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path))
    mode = RunMode.of(spec, instant=True, workers=1)
    assert mode.buffered and mode.screens and not mode.guides and not mode.queues_ahead
    live = RunMode.of(spec, instant=False, workers=1)
    assert live.guides == spec.study.guided and not live.buffered and not live.screens
    shared = RunMode.of(spec, instant=True, workers=3)
    assert shared.shared and shared.queues_ahead and not shared.buffered


def test_an_interrupted_grid_continues_on_resume(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, study={"sampler": "grid", "trials": 3}))
    first = tune(spec)
    assert len(first.study.trials) == 3
    again = tune(load_spec(small_spec(tmp_path, study={"sampler": "grid", "trials": 500})))
    measured = {m.deployment.key() for m in again.points}
    feasible = Task(
        problem=build_problem(spec),
        space=load_space("small"),
        backend=backends.create("simulator"),
        sla=spec.sla,
    ).feasible
    assert measured == {d.key() for d in feasible.deployments}  # every candidate, each once
    measured_trials = [t for t in again.study.trials if TrialRecord.of(t).measured]
    assert len(measured_trials) == len(feasible)


def test_screening_without_estimates_ranks_as_with_them(tmp_path: Path) -> None:
    # The screening asks the simulator for its predictions only (no intervals, no energy);
    # the ranking and the front must be those of fully estimated points.
    from backends.base import Capabilities
    from backends.simulator import SimulatorBackend
    from tuner.screen import screen

    class FullyEstimated(SimulatorBackend):
        capabilities = Capabilities(instant=True)  # no estimates=False: full points

    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "qwen3-32b-h200.yaml")
    problem = build_problem(spec)
    space = load_space("dense-single-node")
    bare = Task(problem=problem, space=space, backend=SimulatorBackend(), sla=spec.sla)
    full = Task(problem=problem, space=space, backend=FullyEstimated(), sla=spec.sla)
    assert bare.backend.capabilities.estimates and not full.backend.capabilities.estimates
    assert screen(bare) == screen(full)
    assert len(screen(bare).ranked) > 100
