"""Workers on a shared study: ``tuner worker`` and the local processes of ``--workers N``.

A local worker gets the storage URL in its environment (:data:`STORAGE_ENV`), never on its
command line: ``ps`` shows every user the command lines, while a process's environment is
readable only by its owner.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna

import backends

from .errors import TunerError
from .explore import ExplorerProposer
from .outages import OUTAGE_S, StorageOutage
from .search.loop import TrialLoop
from .search.task import Task
from .shared_slots import SLOTS_ENV, SharedSlotPool
from .slots import GpuSlots, SlotPool
from .spec import StudySpec, build_problem
from .storage import HEARTBEAT_S, storage_errors
from .studies import BUDGET_ATTR, claims_for, heartbeats_for, join_study, space_of
from .study import StudySummary, TrialOutcome, summarize

__all__ = ["STORAGE_ENV", "run_local_workers", "work", "worker_command"]

#: The environment variable `tuner worker` reads the storage URL from when --storage is absent.
STORAGE_ENV = "TUNER_STORAGE"

log = logging.getLogger(__name__)


def work(
    storage_url: str,
    study_name: str,
    *,
    trials: int | None = None,
    gpus: int | None = None,
    heartbeat_s: int = HEARTBEAT_S,
    outage_s: float = OUTAGE_S,
    seed: int | None = None,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None = None,
    slots_file: str | None = None,
) -> StudySummary:
    """``tuner worker``: run trials of a shared study until its budget is finished.

    ``gpus``: the GPUs this worker places candidates on (default: the spec's fleet); used
    by backends that accept a :class:`~backends.base.MeasureContext`. ``outage_s``: how
    long storage calls are retried while the database is unreachable before the worker
    gives up (:class:`~tuner.errors.StorageError`). ``slots_file``: share the GPUs with the
    other workers of this machine that name the same file (the local workers of
    ``tuner tune --workers N``), so no GPU runs two trials; without it the worker owns them.
    """
    if seed is None:  # workers must not all draw the same candidates
        seed = (os.getpid() * 7919 + time.time_ns()) % 2**31
    spec, study, storage = join_study(storage_url, study_name, seed=seed)
    problem = build_problem(spec)
    space = space_of(spec)
    backend = backends.create(spec.backend.name, dict(spec.backend.options))
    n_trials = trials or int(study.user_attrs.get(BUDGET_ATTR, spec.study.trials))
    per_node = spec.hardware.gpus_per_node
    total = gpus or spec.hardware.gpus
    nodes, gpn = -(-total // per_node), min(per_node, total)
    slots: GpuSlots = (
        SharedSlotPool(slots_file, nodes=nodes, gpus_per_node=gpn)
        if slots_file
        else SlotPool(nodes=nodes, gpus_per_node=gpn)
    )
    with storage_errors(storage_url):
        heartbeats = heartbeats_for(storage, study, interval_s=heartbeat_s)
        outage = StorageOutage(
            storage_url, budget_s=outage_s, on_recover=heartbeats.forget if heartbeats else None
        )
        task = Task(
            problem=problem, space=space, backend=backend, sla=spec.sla, objective=spec.study.objective
        )
        explorer = ExplorerProposer.of(task, after=spec.study.explore_after, seed=seed)
        loop = TrialLoop(
            study,
            task,
            proposers=[explorer] if explorer is not None else [],
            on_trial=on_trial,
            claims=claims_for(storage, study),
            slots=slots,
            heartbeats=heartbeats,
            outage=outage,
        )
        return loop.run(n_trials)


def _die_with_parent() -> None:
    """In a worker child: get SIGTERM when `tuner tune` dies (even by kill -9), so no worker
    outlives the command that resumes the study (Linux; elsewhere a no-op)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def worker_command(spec: StudySpec, index: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of local worker ``index``: the storage URL (and its
    password) travels in the environment, not in the command line."""
    cmd = [
        sys.executable,
        "-m",
        "tuner.cli",
        "worker",
        "--study",
        spec.study_name(),
        "--quiet",
        "--seed",
        str(spec.study.seed + index),
    ]
    return cmd, {**os.environ, STORAGE_ENV: spec.storage_url(), SLOTS_ENV: str(slots_file_of(spec))}


def slots_file_of(spec: StudySpec) -> Path:
    """The GPU slot file the local workers of a run share (in its run directory)."""
    return Path(spec.output_dir) / "gpu-slots.json"


def run_local_workers(spec: StudySpec, workers: int, study: optuna.Study) -> StudySummary:
    """Start ``workers`` local ``tuner worker`` processes on the study and wait for them."""
    procs = []
    slots_file_of(spec).unlink(missing_ok=True)  # a killed earlier run's holders are gone
    for i in range(workers):
        cmd, env = worker_command(spec, i)
        procs.append(subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(2)  # SIGINT: each worker records its trial as interrupted
        for p in procs:
            p.wait(timeout=60)
        raise
    failed = [f"worker {i} exited {c}" for i, c in enumerate(codes) if c != 0]
    if len(failed) == workers:
        raise TunerError(f"every worker failed ({', '.join(failed)}); see their messages above")
    for line in failed:
        log.warning(line)
    return summarize(study, spec.sla)
