"""Faults of the storage during a run: outages ridden out, dead workers' trials failed with
their reason, a buffered study refused to workers, and no password on a worker's command line.

Real components throughout: SQLite locks, a real PostgreSQL stopped and started again,
real `tuner tune` and `tuner worker` processes on the simulator.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuner.cli import main
from tuner.commands.tune import _resume_command
from tuner.errors import StorageError
from tuner.heartbeats import FAIL_REASON_ATTR
from tuner.outages import StorageOutage
from tuner.spec import load_spec
from tuner.storage import open_storage, redact
from tuner.studies import BUDGET_ATTR, WRITER_ATTR, open_study
from tuner.workers import STORAGE_ENV, worker_command

from .conftest import PG_PASSWORD, TemporaryPostgres, running_postgres, small_spec
from .test_workers import BOOT, ROOT, measured_keys, tuner_proc, wait_for

#: A space of 648 candidates (Llama-3.1-8B on 8 H100, the default preset): a study of a few
#: hundred trials does not run out of new deployments.
WIDE = {
    "hardware": {"gpu": "H100", "gpus": 8, "gpus_per_node": 8},
    "search_space": {"preset": None},
}


def _lock_for(path: Path, seconds: float) -> threading.Thread:
    """Hold SQLite's write lock on ``path`` for ``seconds`` from another connection."""
    ready = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        ready.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(10)
    return thread


def _write(path: Path) -> None:
    with sqlite3.connect(path, timeout=0) as conn:
        conn.execute("INSERT INTO t VALUES (1)")


def test_outage_is_ridden_out_then_recovered(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    recovered = []
    outage = StorageOutage(f"sqlite:///{db}", budget_s=20, on_recover=lambda: recovered.append(1))
    holder = _lock_for(db, 1.5)
    start = time.monotonic()
    outage.call(lambda: _write(db))  # "database is locked": transient, retried
    holder.join()
    assert time.monotonic() - start >= 1.0
    assert outage.outages == 1 and outage.retries >= 3 and recovered == [1]
    assert 1.0 <= outage.down_s < 10


def test_outage_gives_up_in_one_line_after_its_budget(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    outage = StorageOutage(f"sqlite:///{db}", budget_s=1)
    holder = _lock_for(db, 4)
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        outage.call(lambda: _write(db))
    assert time.monotonic() - start < 3
    holder.join()
    message = str(info.value)
    assert "\n" not in message and "unreachable for" in message and "database is locked" in message


def test_permanent_error_is_not_retried(tmp_path: Path) -> None:
    outage = StorageOutage("sqlite:///x.db", budget_s=30)
    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        outage.call(lambda: _write(tmp_path / "empty.db"))
    assert time.monotonic() - start < 1 and outage.retries == 0


def test_running_trial_without_heartbeat_is_failed_with_its_reason_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    spec = load_spec(small_spec(tmp_path, study={"storage": url, "name": "st", "trials": 6}))
    study = open_study(spec)
    study.set_user_attr(BUDGET_ATTR, 6)
    dead = study.ask()  # its worker died between ask and its first beat: no heartbeat at all
    dead.set_user_attr("worker", "gone:1")
    start = time.monotonic()
    assert main(["worker", "--storage", url, "--study", "st", "--heartbeat", "1", "-q"]) == 0
    waited = time.monotonic() - start
    trials = study.get_trials(deepcopy=False)
    assert trials[dead.number].state == TrialState.FAIL
    assert trials[dead.number].user_attrs[FAIL_REASON_ATTR] == "worker died: no heartbeat for 3 s"
    assert 3 <= waited < 60  # failed after the grace of 3 beats of 1 s, not waited on forever
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].state.is_finished()
    left = [(t.number, t.state, t.system_attrs) for t in trials if not t.state.is_finished()]
    assert not left
    capsys.readouterr()
    assert main(["status", "--storage", url, "--study", "st", "--json"]) == 0
    failed = json.loads(capsys.readouterr().out)["failed"]
    assert [f["reason"] for f in failed] == ["worker died: no heartbeat for 3 s"]


def test_a_trial_created_as_the_connection_drops_is_failed_before_the_worker_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last ask of the budget commits its trial, then the connection drops: the ask is
    retried (a second trial), which finishes the budget; the first has no worker and never
    beats. The worker fails it after the grace instead of leaving it RUNNING."""
    from sqlalchemy.exc import OperationalError

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    spec = load_spec(small_spec(tmp_path, study={"storage": url, "name": "drop", "trials": 3}))
    study = open_study(spec)
    study.set_user_attr(BUDGET_ATTR, 3)
    for _ in range(2):  # two trials of the budget done by an earlier worker
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={FAIL_REASON_ATTR: "x"}))
    # The fault goes where Optuna's storage commits a new trial (its cache calls this one).
    original = optuna.storages.RDBStorage._create_new_trial
    dropped: list[int] = []

    def create_then_drop(self, study_id, template_trial=None):  # type: ignore[no-untyped-def]
        created = original(self, study_id, template_trial)
        if not dropped:
            dropped.append(created.number)
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        return created

    monkeypatch.setattr(optuna.storages.RDBStorage, "_create_new_trial", create_then_drop)
    start = time.monotonic()
    assert main(["worker", "--storage", url, "--study", "drop", "--heartbeat", "1", "-q"]) == 0
    assert dropped, "the connection dropped inside create_new_trial"
    trials = study.get_trials(deepcopy=False)
    left = [(t.number, t.state) for t in trials if not t.state.is_finished()]
    assert not left, "no trial left RUNNING or WAITING"
    orphan = trials[dropped[0]]
    assert orphan.state == TrialState.FAIL
    assert orphan.user_attrs[FAIL_REASON_ATTR] == "worker died: no heartbeat for 3 s"
    assert time.monotonic() - start < 60


def test_worker_refuses_a_study_a_buffered_run_is_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_spec(tmp_path, **WIDE, study={"sampler": "random", "trials": 3000})
    run_dir = Path(load_spec(path).output_dir)
    url = f"sqlite:///{run_dir / 'study.db'}"
    tune = tuner_proc("tune", str(path), "-q")  # the simulator: one process, write-behind

    def buffered() -> bool:
        try:
            writer = optuna.load_study(study_name="run", storage=url).user_attrs.get(WRITER_ATTR)
        except Exception:  # not created yet
            return False
        return isinstance(writer, dict) and writer.get("mode") == "buffered"

    try:
        wait_for(buffered, 120, "the buffered run to mark its study")
        before = len(optuna.load_study(study_name="run", storage=url).trials)
        assert main(["worker", "--storage", url, "--study", "run"]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "buffers its trials and takes no claims" in lines[0]
        assert "--workers N" in lines[0] and "wait for it to finish" in lines[0]
        assert tune.poll() is None, "the run ended before the worker was refused"
    finally:
        tune.send_signal(signal.SIGINT)
        _, stderr = tune.communicate(timeout=120)
    # 130: interrupted; 0: it finished its space between the check above and the signal.
    assert tune.returncode in (0, 130), stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    study = optuna.load_study(study_name="run", storage=url)
    assert len(study.trials) >= before
    assert not any(t.user_attrs.get("worker", "").endswith(f":{os.getpid()}") for t in study.trials)
    # The writer is gone: its mark no longer stands in a worker's way.
    assert main(["worker", "--storage", url, "--study", "run", "--trials", "1", "-q"]) == 0


def test_another_tune_message_does_not_suggest_a_worker_can_join(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    path = small_spec(tmp_path)
    run_dir = Path(load_spec(path).output_dir)
    run_dir.mkdir(parents=True)
    with open(run_dir / ".tuner.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["tune", str(path), "-q"]) == 2
    line = capsys.readouterr().err.strip()
    assert "another `tuner tune` is running" in line and "--workers N" in line
    assert "join with `tuner worker`" not in line


def test_local_worker_gets_the_storage_url_in_its_environment(tmp_path: Path) -> None:
    url = "postgresql://tuner:s3cret-pw@db.example:5432/studies"
    spec = load_spec(small_spec(tmp_path, study={"storage": url, "name": "s"}))
    cmd, env = worker_command(spec, 0)
    assert not [a for a in cmd if "s3cret" in a or "postgresql" in a], cmd
    assert env[STORAGE_ENV] == url


def test_real_worker_process_has_no_storage_url_on_its_command_line(tmp_path: Path) -> None:
    """A worker started the way `tuner tune --workers` starts it: its /proc cmdline."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    spec = load_spec(
        small_spec(
            tmp_path,
            backend={"name": "slow", "options": {"sleep_s": 0.2}},
            study={"storage": url, "name": "env", "trials": 4},
        )
    )
    open_study(spec).set_user_attr(BUDGET_ATTR, 4)
    cmd, env = worker_command(spec, 0)
    assert cmd[:4] == [sys.executable, "-m", "tuner.cli", "worker"]
    env = {**env, "PYTHONPATH": str(ROOT)}
    # The same `tuner worker` command line, through BOOT, which also knows the test backends.
    proc = subprocess.Popen([sys.executable, "-c", BOOT, *cmd[3:]], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        cmdline: list[str] = []
        for _ in range(200):  # right after fork the child has not exec'd yet: cmdline is empty
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")
            if "worker" in cmdline:
                break
            time.sleep(0.01)
        assert "worker" in cmdline and "--study" in cmdline
        assert not [a for a in cmdline if "sqlite" in a or "shared.db" in a], cmdline
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr.decode()
    trials = optuna.load_study(study_name="env", storage=url).get_trials(deepcopy=False)
    # It found its storage: the budget of 4 is spent there (a resampled duplicate is PRUNED).
    assert len([t for t in trials if t.state.is_finished()]) == 4
    assert any(t.state == TrialState.COMPLETE for t in trials)


def test_worker_without_a_storage_url_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert main(["worker", "--study", "s"]) == 2
    assert f"${STORAGE_ENV}" in capsys.readouterr().err.strip()


def test_resume_hint_hides_the_password() -> None:
    url = "postgresql://tuner:s3cret-pw@db:5432/s"
    hint = _resume_command(["tune", "spec.yaml", "--storage", url, "--workers", "2"], url)
    assert "s3cret" not in hint and redact(url) in hint and "password not shown" in hint
    assert _resume_command(["tune", "spec.yaml"], None) == "tune spec.yaml"


# --- A real PostgreSQL stopped and started again mid-study -------------------------------


@pytest.fixture
def own_postgres() -> Iterator[TemporaryPostgres]:
    """A PostgreSQL server of this test alone (it is stopped and started again)."""
    with running_postgres() as server:
        yield server


def _finished(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except Exception:  # not created yet
        return -1
    return sum(t.state.is_finished() for t in trials)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


OUTAGE_FIGURES: dict[str, object] = {}


@pytest.mark.postgres
def test_postgres_restart_mid_study_with_two_local_workers(
    tmp_path: Path, own_postgres: TemporaryPostgres
) -> None:
    url = own_postgres.create_database("restart")
    watch = open_storage(url)
    budget = 150
    path = small_spec(tmp_path, **WIDE, study={"sampler": "random", "trials": budget})
    tune = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuner.cli",
            "tune",
            str(path),
            "--storage",
            url,
            "--study",
            "r",
            "--workers",
            "2",
            "-q",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: len(_children(tune.pid)) == 2, 120, "two local workers")
        for child in _children(tune.pid):  # no password (nor URL) on a worker's command line
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode()
            assert "worker" in cmdline and PG_PASSWORD not in cmdline and "postgresql" not in cmdline
        wait_for(lambda: _finished(watch, "r") >= 40, 120, "40 finished trials")
        before = _finished(watch, "r")
        own_postgres.stop_server()
        stopped = time.monotonic()
        time.sleep(10)
        assert tune.poll() is None, "the run ended during the outage"
        own_postgres.start_server()
        down_s = time.monotonic() - stopped
        _, stderr_bytes = tune.communicate(timeout=300)
    finally:
        if tune.poll() is None:
            tune.kill()
    stderr = stderr_bytes.decode()
    assert tune.returncode in (0, 1), stderr
    assert "Traceback" not in stderr, stderr
    study = optuna.load_study(study_name="r", storage=watch)
    trials = study.get_trials(deepcopy=False)
    # Every trial accounted for: finished, a FAIL with its reason, a PRUNED with its reason.
    assert not [t.number for t in trials if not t.state.is_finished()]
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get(FAIL_REASON_ATTR), t.number
        if t.state == TrialState.PRUNED:
            assert "busy" in t.user_attrs or "infeasible" in t.user_attrs, t.number
    failed = [t for t in trials if t.state == TrialState.FAIL]
    keys = measured_keys(study)
    assert len(keys) == len(set(keys)), "a deployment was measured twice"
    assert sum(t.state.is_finished() for t in trials) >= budget  # the workers finished the budget
    back = [float(x) for x in re.findall(r"reachable again after ([0-9.]+) s", stderr)]
    retries = [int(x) for x in re.findall(r"\((\d+) retries so far\)", stderr)]
    assert len(back) == 2, stderr  # both workers saw the outage and rode it out
    assert "error:" not in stderr, stderr
    OUTAGE_FIGURES.update(
        trials=len(trials),
        finished_before_outage=before,
        finished_after_outage=sum(t.state.is_finished() for t in trials) - before,
        states=dict(Counter(t.state.name for t in trials)),
        fail_reasons=dict(Counter(str(t.user_attrs.get(FAIL_REASON_ATTR)) for t in failed)),
        failed_trials=[(t.number, sorted(t.user_attrs), t.params) for t in failed],
        measured=len(keys),
        outage_s=round(down_s, 1),
        reachable_again_after_s=back,
        retries=retries,
        warnings=[line for line in stderr.splitlines() if "storage" in line][:8],
    )
    (tmp_path / "figures.json").write_text(json.dumps(OUTAGE_FIGURES, indent=1, default=str))
    print("OUTAGE FIGURES", json.dumps(OUTAGE_FIGURES, default=str))


@pytest.mark.postgres
def test_worker_gives_up_in_one_line_and_its_trial_is_failed_on_resume(
    tmp_path: Path, own_postgres: TemporaryPostgres
) -> None:
    url = own_postgres.create_database("giveup")
    spec = load_spec(
        small_spec(
            tmp_path,
            backend={"name": "slow", "options": {"sleep_s": 0.5}},
            study={"sampler": "random", "trials": 4, "storage": url, "name": "g"},
        )
    )
    study = open_study(spec)
    study.set_user_attr(BUDGET_ATTR, 4)
    watch = open_storage(url)
    args = ("worker", "--storage", url, "--study", "g", "--heartbeat", "1", "-q")
    worker = tuner_proc(*args, "--storage-outage", "3")

    def running() -> bool:
        trials = optuna.load_study(study_name="g", storage=watch).get_trials(deepcopy=False)
        return any(t.state == TrialState.RUNNING and "deployment" in t.user_attrs for t in trials)

    wait_for(running, 60, "a running trial")
    own_postgres.stop_server()
    stopped = time.monotonic()
    try:
        _, stderr_bytes = worker.communicate(timeout=60)
        gave_up_after = time.monotonic() - stopped
    finally:
        worker.kill()
        own_postgres.start_server()
    stderr = stderr_bytes.decode()
    assert worker.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable for" in errors[0], stderr
    assert "Traceback" not in stderr and PG_PASSWORD not in stderr, stderr
    assert 3 <= gave_up_after < 30
    # The trial it left RUNNING is failed, with its reason, by the worker that resumes.
    left = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    assert left
    resume = tuner_proc(*args)
    _, stderr_bytes = resume.communicate(timeout=120)
    assert resume.returncode == 0, stderr_bytes.decode()
    trials = study.get_trials(deepcopy=False)
    for number in left:
        assert trials[number].state == TrialState.FAIL
        assert trials[number].user_attrs[FAIL_REASON_ATTR] == "worker died: no heartbeat for 3 s"
    assert not [t.number for t in trials if not t.state.is_finished()]
    OUTAGE_FIGURES["gave_up_after_s"] = round(gave_up_after, 1)
    print("GIVE-UP", round(gave_up_after, 1), errors[0])
