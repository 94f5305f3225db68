"""The study: resume, infeasible candidates, duplicates, failures, samplers, objectives."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import backends
from search_spaces import infeasible_reason, load_space
from tuner.errors import StudyMismatch
from tuner.rundir import load_run
from tuner.runs import tune
from tuner.spec import build_problem, load_spec

from .conftest import small_spec


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_run_writes_run_directory(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path))
    result = tune(spec)
    run = Path(spec.output_dir)
    for name in ("study.db", "points.csv", "front.csv", "pareto.png", "pick.yaml"):
        assert (run / name).is_file(), name
    assert (run / "deploy" / "vllm" / "node-0.sh").is_file()
    assert (run / "deploy" / "kubernetes").is_dir()
    assert result.pick is not None
    assert result.pick.chosen.point.tok_s_user >= 40


def test_resume_continues_and_keeps_points(tmp_path: Path) -> None:
    path = small_spec(
        tmp_path,
        study={"trials": 6, "sampler": "random", "seed": 3},
        search_space={"preset": "dense-single-node"},
        hardware={"gpu": "H100", "gpus": 8, "gpus_per_node": 8},
    )
    spec = load_spec(path)
    first = tune(spec)
    finished = [t for t in first.study.get_trials() if t.state.is_finished()]
    assert len(finished) == 6
    before = {(m.trial, m.point.concurrency, m.point.tok_s_gpu) for m in first.points}

    again = tune(spec)  # same budget: nothing new to run
    assert again.summary.trials == 0
    more = tune(
        load_spec(path).__class__(
            **{**vars(spec), "study": spec.study.__class__(**{**vars(spec.study), "trials": 10})}
        )
    )
    run = load_run(spec.output_dir)
    assert sum(t.state.is_finished() for t in run.study.trials) == 10
    after = {(m.trial, m.point.concurrency, m.point.tok_s_gpu) for m in run.points}
    assert before <= after
    assert more.summary.trials == 4


def test_resume_refuses_another_problem(tmp_path: Path) -> None:
    tune(load_spec(small_spec(tmp_path)))
    changed = small_spec(tmp_path, workload={"isl": 2000})
    with pytest.raises(StudyMismatch, match="different spec"):
        tune(load_spec(changed))


def test_infeasible_are_pruned_with_reason_and_never_measured(tmp_path: Path) -> None:
    # Qwen3-32B in bf16 (65 GB of weights) cannot start on one H100: TP1 is infeasible by
    # memory, whatever the encoding does about the GPU budget.
    spec = load_spec(small_spec(tmp_path, model="Qwen/Qwen3-32B", study={"trials": 25, "sampler": "random"}))
    result = tune(spec)
    pruned = result.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "expected infeasible candidates"
    for t in pruned:
        assert t.user_attrs["infeasible"].split(":")[0] in ("gpu_budget", "memory", "placement")
        assert "points" not in t.user_attrs
    assert any(t.user_attrs["infeasible"].startswith("memory:") for t in pruned)
    assert sum(result.summary.infeasible.values()) == len(pruned)


def test_duplicates_answered_from_storage(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, study={"trials": 30, "sampler": "random"}))
    result = tune(spec)
    trials = result.study.get_trials()
    dups = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert dups
    for t in dups:
        original = trials[t.user_attrs["duplicate_of"]]
        assert t.values == original.values
        assert t.user_attrs["deployment"] == original.user_attrs["deployment"]
    measured = [t for t in trials if "points" in t.user_attrs]
    keys = [str(t.user_attrs["deployment"]) for t in measured]
    assert len(keys) == len(set(keys)), "a deployment was measured twice"


def test_failed_candidate_is_a_failed_trial(tmp_path: Path, flaky_backend: str) -> None:
    spec = load_spec(
        small_spec(tmp_path, backend={"name": flaky_backend}, study={"trials": 15, "sampler": "random"})
    )
    result = tune(spec)
    failed = result.study.get_trials(states=(TrialState.FAIL,))
    assert failed
    assert all("out of memory" in t.user_attrs["fail_reason"] for t in failed)
    assert result.summary.failed and result.pick is not None  # the study went on


def test_interrupt_keeps_measured_points_and_resumes(tmp_path: Path, flaky_backend: str) -> None:
    flag = tmp_path / "interrupt-once"
    flag.touch()
    options = {"interrupt_after": 3, "interrupt_flag": str(flag)}
    spec = load_spec(
        small_spec(
            tmp_path,
            backend={"name": flaky_backend, "options": options},
            study={"trials": 8, "sampler": "random"},
        )
    )
    with pytest.raises(KeyboardInterrupt):
        tune(spec)
    run = load_run(spec.output_dir)
    interrupted = [t for t in run.study.trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert len(interrupted) == 1
    assert interrupted[0].state == TrialState.FAIL
    assert len(interrupted[0].user_attrs["points"]) == 1  # the point measured before Ctrl-C
    finished_before = sum(t.state.is_finished() for t in run.study.trials)

    result = tune(spec)  # the same command resumes
    assert sum(t.state.is_finished() for t in result.study.trials) == 8
    assert result.summary.trials == 8 - finished_before


def test_grid_measures_every_feasible_candidate_once(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, study={"trials": 500, "sampler": "grid"}))
    result = tune(spec)
    measured = [t for t in result.study.trials if "points" in t.user_attrs]
    assert result.summary.infeasible.total() == 0 and not result.summary.duplicates
    assert len(measured) == len(result.study.trials) == result.summary.measured


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_samplers_by_name(tmp_path: Path, sampler: str) -> None:
    spec = load_spec(small_spec(tmp_path, study={"trials": 8, "sampler": sampler}))
    result = tune(spec)
    assert result.summary.measured >= 1


def test_front_objective_is_two_dimensional(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, study={"trials": 8, "objective": "front"}))
    result = tune(spec)
    done = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert all(len(t.values) == 2 for t in done)
    assert len(result.study.directions) == 2


def test_screening_warm_start_finds_exhaustive_optimum(tmp_path: Path) -> None:
    spec = load_spec(
        small_spec(
            tmp_path,
            hardware={"gpu": "H100", "gpus": 8, "gpus_per_node": 8},
            search_space={"preset": "dense-single-node"},
            study={"trials": 20, "sampler": "tpe"},
        )
    )
    result = tune(spec)
    assert result.screening is not None and result.pick is not None
    # Exhaustive enumeration of the same space, priced directly.
    problem = build_problem(spec)
    space = load_space("dense-single-node")
    sim = backends.create("simulator")
    best = max(
        p.tok_s_gpu
        for dep in space.candidates(problem)
        if infeasible_reason(dep, problem) is None and sim.check(dep, problem) is None
        for p in sim.measure(dep, problem)
        if spec.sla.meets(p)
    )
    assert result.pick.chosen.point.tok_s_gpu >= 0.99 * best
    assert result.summary.trials <= 20


def test_live_backend_is_guided_by_the_simulator(tmp_path: Path, flaky_backend: str) -> None:
    """A non-instant backend: the first trial measures the simulator's best prediction, and
    the run reports how the refit moved the simulator."""
    spec = load_spec(
        small_spec(
            tmp_path,
            hardware={"gpu": "H100", "gpus": 8, "gpus_per_node": 8},
            search_space={"preset": "dense-single-node"},
            backend={"name": flaky_backend, "options": {"fail_tp": 99}},
            study={"trials": 6, "sampler": "random"},
        )
    )
    result = tune(spec)
    assert result.guidance is not None and result.guidance.measured >= 4
    first = min(result.study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    problem = build_problem(spec)
    from tuner.guided import GuidedSearch

    (top,) = GuidedSearch(load_space("dense-single-node"), problem, spec.sla).propose(1)
    assert first.user_attrs["deployment"] == top.to_dict()
    # Guided trials are enqueued ones; one in four is the sampler's own draw.
    done = [t for t in result.study.trials if t.state.is_finished()]
    enqueued = [t for t in done if "fixed_params" in t.system_attrs]
    assert len(done) == 6 and 3 <= len(enqueued) < 6


def test_guidance_can_be_turned_off(tmp_path: Path, flaky_backend: str) -> None:
    spec = load_spec(
        small_spec(
            tmp_path,
            backend={"name": flaky_backend, "options": {"fail_tp": 99}},
            study={"trials": 3, "sampler": "random", "guided": False},
        )
    )
    result = tune(spec)
    assert result.guidance is None
    assert not [t for t in result.study.trials if "fixed_params" in t.system_attrs]
