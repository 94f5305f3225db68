"""Simulator-guided live search on a stand-in world (the simulator with hidden constants +
noise, ``benchmarks/standin_world.py``): no GPUs needed."""

from __future__ import annotations

import math
import random

import optuna
import pytest

from benchmarks.standin_world import StandInWorld
from search_spaces import load_space
from serving import Problem
from tests.search_spaces.conftest import make_problem
from tuner.guided import GuidedSearch, fitted_names
from tuner.samplers import make_sampler
from tuner.sla import SLA
from tuner.study import StudySummary, TrialOutcome, objective_values, run_trials

SLA_LOOSE = SLA(min_tok_s_user=30, max_ttft_ms=2000)


@pytest.fixture(scope="module")
def problem() -> Problem:
    return make_problem("Qwen3-32B", "H200", isl=4000, osl=1000)


def test_duplicates_are_not_measured_again(problem: Problem) -> None:
    space = load_space("dense-single-node")
    world = StandInWorld(seed=0)
    guide = GuidedSearch(space, problem, SLA_LOOSE, "sla")
    study = optuna.create_study(direction="maximize", sampler=make_sampler("random", seed=0))
    outcomes: list[TrialOutcome] = []

    def on_trial(outcome: TrialOutcome, _summary: StudySummary) -> None:
        outcomes.append(outcome)

    kw = dict(space=space, backend=world, problem=problem, sla=SLA_LOOSE, objective="sla", on_trial=on_trial)
    (first,) = guide.propose()
    for _ in range(2):  # the same deployment enqueued twice: the study answers from storage
        study.enqueue_trial(space.params(first))
        finished = sum(t.state.is_finished() for t in study.trials)
        run_trials(study, n_trials=finished + 1, **kw)  # type: ignore[arg-type]
    assert [o.state for o in outcomes] == ["measured", "duplicate"]
    assert world.measure_calls == 1
    guide.observe(first, list(outcomes[0].points))
    guide.observe(first, list(outcomes[0].points))  # observing it again changes nothing
    assert len(guide.measured) == 1
    assert first.key() not in {d.key() for d in guide.propose(50)}


def test_refit_moves_constants_toward_the_hidden_world(problem: Problem) -> None:
    guide = GuidedSearch(load_space("dense-single-node"), problem, SLA_LOOSE, "sla")
    world = StandInWorld(noise=0.01, seed=3)
    for deployment in guide.feasible[::97][:5]:
        guide.observe(deployment, world.measure(deployment, problem))
    report = guide.report()
    assert set(report.constants) == set(fitted_names(problem, "vllm"))
    for name, (prior, fitted) in report.constants.items():
        hidden = getattr(world.constants, name)
        assert abs(math.log(fitted / hidden)) < abs(math.log(prior / hidden)), name
    assert report.error_after < report.error_before / 3
    assert report.moved > 0
    assert "live trials" in report.summary()


def test_refit_moves_constants_toward_a_harsh_world(problem: Problem) -> None:
    """In the harsh world most hidden constants are outside the fitted set (collectives,
    attention kernels, per-sequence host time): the refit cannot fit them away, but it still
    moves every fitted constant toward its hidden value and cuts the error on the trials."""
    guide = GuidedSearch(load_space("dense-single-node"), problem, SLA_LOOSE, "sla")
    world = StandInWorld(noise=0.01, seed=7, world="harsh")
    for deployment in guide.feasible[::97][:5]:
        guide.observe(deployment, world.measure(deployment, problem))
    report = guide.report()
    for name, (prior, fitted) in report.constants.items():
        hidden = getattr(world.constants, name)
        assert abs(math.log(fitted / hidden)) < abs(math.log(prior / hidden)), name
    assert report.error_before > 0.2  # the harsh world is far from the prior here
    assert report.error_after < report.error_before / 5


def _trials_to_optimum(problem: Problem, method: str, seed: int, budget: int = 40) -> float:
    """Live trials until the pick is truly within 2% of the world's optimum."""
    space = load_space("dense-single-node")
    world = StandInWorld(seed=seed)
    guide = GuidedSearch(space, problem, SLA_LOOSE, "sla")
    truth = {}
    for d in guide.feasible:
        values, violation = objective_values(world.true_points(d, problem), SLA_LOOSE, "sla")
        truth[d.key()] = values[0] if violation == 0 else 0.0
    optimum = max(truth.values())
    order = list(guide.feasible)
    random.Random(seed).shuffle(order)
    best: tuple[float, str] | None = None
    for k in range(1, budget + 1):
        deployment = guide.propose()[0] if method == "guided" else order[k - 1]
        points = world.measure(deployment, problem)
        if method == "guided":
            guide.observe(deployment, points)
        values, violation = objective_values(points, SLA_LOOSE, "sla")
        if violation == 0 and (best is None or values[0] > best[0]):
            best = (values[0], deployment.key())
        if best is not None and truth[best[1]] >= 0.98 * optimum:
            return k
    return math.inf


def test_guided_beats_random_on_a_small_problem(problem: Problem) -> None:
    guided = [_trials_to_optimum(problem, "guided", seed) for seed in range(3)]
    blind = [_trials_to_optimum(problem, "random", seed) for seed in range(3)]
    assert max(guided) <= 5
    assert sorted(guided)[1] < sorted(blind)[1]


def test_queue_stops_proposing_a_topology_that_keeps_failing(problem: Problem) -> None:
    """Serial live flow where the predicted best topology fails every time it runs: once it
    has failed twice, no later proposal of the queue has that topology."""
    from optuna.trial import TrialState

    from tuner.guided import GuidedQueue

    space = load_space("dense-single-node")
    guide = GuidedSearch(space, problem, SLA(min_tok_s_user=20.0))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    queue = GuidedQueue(guide, study, space, budget=50)
    first = guide.propose(1)[0]
    failing = first.label()
    queue.after_trial(first, [], measured=False, failed=True)
    failures, after_limit = 1, []
    for _ in range(12):
        proposed = bool(study.get_trials(states=(TrialState.WAITING,)))  # ask() takes it first
        trial = study.ask()
        dep = space.suggest(trial, problem)
        study.tell(trial, state=TrialState.FAIL)
        if proposed and failures >= GuidedQueue.FAILURES_PER_LABEL:
            after_limit.append(dep.label())
        failed = dep.label() == failing
        failures += failed
        queue.after_trial(dep, [], measured=False, failed=failed)
    assert after_limit, "the queue made no proposal after the limit was reached"
    assert failing not in after_limit
