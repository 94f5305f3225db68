"""Shared studies with real worker processes: PostgreSQL, claims, heartbeats, kill -9, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from tuner.cli import main
from tuner.front import pareto_front
from tuner.rundir import load_run
from tuner.runs import tune
from tuner.spec import load_spec
from tuner.studies import BUDGET_ATTR, open_study

from .conftest import small_spec

ROOT = Path(__file__).resolve().parents[2]
#: A `tuner` command line in a subprocess that also knows the test backends.
BOOT = (
    "import sys, backends.registry as r; r.BACKENDS.update(slow='tests.tuner.flaky_backend:SlowBackend'); "
    "from tuner.cli import main; sys.exit(main(sys.argv[1:]))"
)


def tuner_proc(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", BOOT, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def front_rows(points: list) -> list[tuple[str, int, float, float]]:
    return sorted(
        (m.label, m.point.concurrency, round(m.point.tok_s_gpu, 6), round(m.point.tok_s_user, 6))
        for m in pareto_front(points)
    )


def measured_keys(study: optuna.Study) -> list[str]:
    return [
        json.dumps(t.user_attrs["deployment"], sort_keys=True)
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
    ]


def stored_points(study: optuna.Study) -> set[tuple[str, int, float]]:
    """Every load point stored in any trial (finished, failed or running)."""
    return {
        (json.dumps(t.user_attrs["deployment"], sort_keys=True), p["concurrency"], p["tok_s_gpu"])
        for t in study.get_trials(deepcopy=False)
        for p in t.user_attrs.get("points", [])
    }


def wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.postgres
def test_three_workers_match_single_worker_front(tmp_path: Path, pg_url: str) -> None:
    grid = {"sampler": "grid", "trials": 500}
    multi = small_spec(tmp_path / "multi", study=grid)
    assert main(["tune", str(multi), "--storage", pg_url, "--study", "s3", "--workers", "3", "-q"]) == 0
    shared = load_run(None, storage=pg_url, study_name="s3")
    single = tune(load_spec(small_spec(tmp_path / "single", study=grid)))

    trials = shared.study.get_trials(deepcopy=False)
    keys = measured_keys(shared.study)
    assert len(keys) == len(set(keys)), "a deployment was measured twice"
    assert set(keys) == set(measured_keys(single.study))
    # Workers that ask at the same moment may overshoot the budget by one trial each: an
    # extra draw past the queued grid, never a second measurement. It is answered from
    # storage, or given up as PRUNED when another worker is still measuring the deployment
    # it drew ("busy") or its knobs do not fit ("infeasible"): seen on a starved CPU.
    overshoot = len(trials) - len(single.study.trials)
    assert 0 <= overshoot <= 2
    others = [t for t in trials if t.state != TrialState.COMPLETE]
    assert len(others) <= overshoot, [(t.number, t.state, t.user_attrs) for t in others]
    for t in others:  # every trial accounted for, with its reason
        assert t.state == TrialState.PRUNED and ("busy" in t.user_attrs or "infeasible" in t.user_attrs)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) >= 2, f"expected the trials spread over workers, got {workers}"
    assert front_rows(shared.points) == front_rows(single.points)
    # Outputs from the storage URL alone.
    assert main(["show", "--storage", pg_url, "--study", "s3", "--json"]) == 0
    assert main(["pick", "--storage", pg_url, "--study", "s3", "--out", str(tmp_path / "pick")]) == 0
    assert (tmp_path / "pick" / "pick.yaml").is_file()
    assert main(["export", "--storage", pg_url, "--study", "s3", "--out", str(tmp_path / "deploy")]) == 0
    assert main(["status", "--storage", pg_url, "--study", "s3", "--json"]) == 0


def _shared_study(tmp_path: Path, url: str, name: str, *, backend: dict, study: dict) -> optuna.Study:
    spec = load_spec(small_spec(tmp_path, backend=backend, study={**study, "storage": url, "name": name}))
    created = open_study(spec)
    created.set_user_attr(BUDGET_ATTR, spec.study.trials)
    return created


@pytest.mark.postgres
def test_concurrent_workers_never_measure_a_deployment_twice(tmp_path: Path, pg_url: str) -> None:
    log = tmp_path / "measured.jsonl"
    # Random sampling over a small space with slow measurements: workers keep drawing the
    # deployment another one is measuring.
    study = _shared_study(
        tmp_path,
        pg_url,
        "claims",
        backend={"name": "slow", "options": {"sleep_s": 0.03, "log": str(log)}},
        study={"sampler": "random", "trials": 30},
    )
    procs = [
        tuner_proc("worker", "--storage", pg_url, "--study", "claims", "--seed", str(i), "-q")
        for i in range(3)
    ]
    for p in procs:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()
    trials = study.get_trials(deepcopy=False)
    assert all(t.state.is_finished() for t in trials) and len(trials) >= 30
    lines = [tuple(json.loads(line)[1:3]) for line in log.read_text().splitlines()]
    twice = [k for k, n in Counter(lines).items() if n > 1]
    assert not twice, f"measured twice: {twice[:3]}"
    keys = measured_keys(study)
    assert len(keys) == len(set(keys))
    pids = {json.loads(line)[0] for line in log.read_text().splitlines()}
    assert len(pids) >= 2


@pytest.mark.postgres
def test_killed_worker_trial_fails_by_heartbeat_and_is_retried(tmp_path: Path, pg_url: str) -> None:
    log = tmp_path / "measured.jsonl"
    study = _shared_study(
        tmp_path,
        pg_url,
        "hb",
        backend={"name": "slow", "options": {"sleep_s": 0.15, "log": str(log)}},
        study={"sampler": "grid", "trials": 500},
    )
    # Queue the grid as `tuner tune` would (the space of small_spec on 2 GPUs).
    spec = load_spec(small_spec(tmp_path))
    import backends
    from tuner.runs import _enqueue_grid
    from tuner.spec import build_problem
    from tuner.studies import space_of as _space

    n = _enqueue_grid(study, _space(spec), build_problem(spec), backends.create("simulator"), 6)
    study.set_user_attr(BUDGET_ATTR, n)
    victim = tuner_proc("worker", "--storage", pg_url, "--study", "hb", "--heartbeat", "1", "-q")

    def running_with_points() -> bool:
        return any(
            t.state == TrialState.RUNNING and t.user_attrs.get("points")
            for t in study.get_trials(deepcopy=False)
        )

    wait_for(running_with_points, 30, "a running trial with a stored point")
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    dead = next(t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING)
    before = stored_points(study)

    survivor = tuner_proc("worker", "--storage", pg_url, "--study", "hb", "--heartbeat", "1", "-q")
    _, stderr = survivor.communicate(timeout=90)
    assert survivor.returncode == 0, stderr.decode()
    trials = study.get_trials(deepcopy=False)
    assert trials[dead.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["resumed_points"] >= 1  # measured only the rest of the ladder
    assert before <= stored_points(study)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    assert done == n  # every grid candidate measured; the dead trial's FAIL is the only extra
    measured = Counter(tuple(json.loads(line)[1:3]) for line in log.read_text().splitlines())
    assert max(measured.values()) == 1, "a load point was measured twice"


def test_killed_tune_resumes_without_losing_points(tmp_path: Path) -> None:
    path = small_spec(
        tmp_path,
        backend={"name": "slow", "options": {"sleep_s": 0.3}},
        study={"sampler": "random", "trials": 8, "seed": 5},
    )
    run_dir = Path(load_spec(path).output_dir)
    proc = tuner_proc("tune", str(path), "-q")
    # Kill while a trial holds its first point of four: at least 3 x 0.3 s before it ends,
    # so the kill lands mid-trial even on a loaded machine.
    url = f"sqlite:///{run_dir / 'study.db'}"

    def progressed() -> bool:
        if not (run_dir / "study.db").is_file():
            return False
        try:
            trials = optuna.load_study(study_name="run", storage=url).get_trials(deepcopy=False)
        except (KeyError, ValueError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            # The study, or its tables, are still being created by the other process.
            return False
        return sum(t.state == TrialState.COMPLETE for t in trials) >= 1 and any(
            t.state == TrialState.RUNNING and len(t.user_attrs.get("points", [])) == 1 for t in trials
        )

    wait_for(progressed, 60, "a finished trial and a running one with points")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    study = optuna.load_study(study_name="run", storage=url)
    before = stored_points(study)
    killed = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    assert len(killed) == 1

    again = tuner_proc("tune", str(path), "-q")  # the same command
    _, stderr = again.communicate(timeout=120)
    assert again.returncode in (0, 1), stderr.decode()
    trials = optuna.load_study(study_name="run", storage=url).get_trials(deepcopy=False)
    assert before <= stored_points(optuna.load_study(study_name="run", storage=url))
    assert trials[killed[0]].state == TrialState.FAIL
    assert trials[killed[0]].user_attrs["fail_reason"] == "interrupted: the process was killed"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retry) == 1 and retry[0].state.is_finished()
    assert sum(t.state.is_finished() for t in trials) >= 8  # the budget is finished
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def _overlaps(log: Path) -> list[tuple[int, int, int]]:
    """(device, pid, pid) for every two points of different workers that ran on one GPU at
    the same time, from the slow backend's log (pid, key, concurrency, devices, began, ended)."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    out = []
    for i, (pid_a, _, _, dev_a, t0_a, t1_a) in enumerate(rows):
        for pid_b, _, _, dev_b, t0_b, t1_b in rows[i + 1 :]:
            if pid_a != pid_b and t0_a < t1_b and t0_b < t1_a:
                out += [(d, pid_a, pid_b) for d in set(dev_a) & set(dev_b)]
    return out


@pytest.mark.postgres
def test_local_workers_share_the_machines_gpus(tmp_path: Path, pg_url: str) -> None:
    """Two workers on one machine with the slot file `tuner tune --workers N` gives them:
    every GPU runs one trial at a time across both (per-process pools both start on GPU 0)."""
    log = tmp_path / "measured.jsonl"
    study = _shared_study(
        tmp_path,
        pg_url,
        "gpu-slots",
        backend={"name": "slow", "options": {"sleep_s": 0.05, "log": str(log)}},
        study={"sampler": "random", "trials": 16},
    )
    slots = tmp_path / "run" / "gpu-slots.json"
    procs = [
        tuner_proc(
            "worker",
            "--storage",
            pg_url,
            "--study",
            "gpu-slots",
            "--seed",
            str(i),
            "--slots",
            str(slots),
            "-q",
        )
        for i in range(2)
    ]
    for p in procs:
        _, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr.decode()
    assert len({json.loads(line)[0] for line in log.read_text().splitlines()}) == 2, "both workers measured"
    assert _overlaps(log) == []
    assert all(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def test_tune_workers_share_one_slot_file(tmp_path: Path) -> None:
    from tuner.workers import SLOTS_ENV, slots_file_of, worker_command

    spec = load_spec(small_spec(tmp_path))
    envs = [worker_command(spec, i)[1] for i in range(3)]
    assert {e[SLOTS_ENV] for e in envs} == {str(slots_file_of(spec))}
    assert slots_file_of(spec).parent == Path(spec.output_dir)
