"""The write-behind twin: every finished trial stored once, in order, by a writer process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import optuna
import pytest

from tuner import write_behind
from tuner.storage import open_storage
from tuner.write_behind import WriteBehind


def _durable(tmp_path: Path) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return optuna.create_study(study_name="wb", storage=open_storage(url)), url


def _run(study: optuna.Study, n: int) -> None:
    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("points", [{"concurrency": c, "tok_s_gpu": float(c)} for c in range(40)])
        return trial.suggest_float("x", 0, 1) + trial.suggest_int("n", 1, 64, log=True)

    study.optimize(objective, n_trials=n)


def _stored(study: optuna.Study) -> list[tuple[float, int]]:
    return [(t.params["x"], t.params["n"]) for t in study.get_trials(deepcopy=False)]


def test_background_copies_then_flush_store_each_trial_once_in_order(tmp_path: Path) -> None:
    durable, url = _durable(tmp_path)
    buffer = WriteBehind(durable, url=url, interval_s=0.0)
    for _ in range(6):
        _run(buffer.memory, 5)
        buffer.maybe_flush()  # returns at once; a writer process copies meanwhile
    buffer.flush()
    assert _stored(durable) == _stored(buffer.memory)
    assert len(durable.trials) == 30


def test_the_copy_runs_in_another_process(tmp_path: Path) -> None:
    durable, url = _durable(tmp_path)
    buffer = WriteBehind(durable, url=url, interval_s=0.0)
    _run(buffer.memory, 40)
    buffer.maybe_flush()
    deadline = time.monotonic() + 60
    while len(durable.get_trials(deepcopy=False)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)  # the parent does nothing: only a writer process can be storing
    assert len(durable.get_trials(deepcopy=False)) == 40
    buffer.flush()
    assert len(durable.trials) == 40


def test_a_writer_killed_part_way_leaves_a_prefix_the_flush_completes(tmp_path: Path) -> None:
    durable, url = _durable(tmp_path)
    buffer = WriteBehind(durable, url=url, interval_s=0.0)
    _run(buffer.memory, 120)
    buffer.maybe_flush()
    time.sleep(0.2)
    writer = multiprocessing.active_children()
    assert writer, "a writer process copies the trials"
    os.kill(writer[0].pid, signal.SIGKILL)
    buffer.flush()
    assert _stored(durable) == _stored(buffer.memory), "no trial lost or stored twice"


def test_a_writer_killed_between_a_commit_and_its_report_stores_no_trial_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable, url = _durable(tmp_path)
    buffer = WriteBehind(durable, url=url, interval_s=0.0)
    _run(buffer.memory, 12)
    reports = iter(range(100))

    def die_on_fifth(fd: int) -> None:  # runs in the forked writer
        if next(reports) == 4:
            os._exit(1)  # the fifth trial is committed, its report never sent
        os.write(fd, b".")

    monkeypatch.setattr(write_behind, "_report", die_on_fifth)
    buffer.maybe_flush()
    buffer.flush()
    assert _stored(durable) == _stored(buffer.memory), "no trial lost or stored twice"
    assert len(durable.trials) == 12


def test_without_a_url_every_copy_is_inline(tmp_path: Path) -> None:
    durable, _ = _durable(tmp_path)
    buffer = WriteBehind(durable, interval_s=0.0)
    _run(buffer.memory, 3)
    buffer.maybe_flush()
    assert len(durable.trials) == 3


def test_a_simulator_run_stores_every_trial_and_its_pick_counts_them(tmp_path: Path) -> None:
    """The outputs are written while the last trials are copied: pick.yaml counts the study's
    trials, not the share stored so far, and the run directory holds all of them."""
    import yaml

    from tuner.rundir import load_run
    from tuner.runs import tune
    from tuner.spec import load_spec

    from .conftest import small_spec

    spec = load_spec(small_spec(tmp_path, study={"sampler": "random", "trials": 30, "seed": 3}))
    tune(spec)
    stored = load_run(spec.output_dir).study.trials
    pick = yaml.safe_load((Path(spec.output_dir) / "pick.yaml").read_text())
    assert pick["study"]["trials"] == len(stored) >= 30
    assert [t.number for t in stored] == list(range(len(stored)))
