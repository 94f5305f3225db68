"""Workers on a shared study: ``tuner worker`` and the local processes of ``--workers N``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable

import optuna

import backends

from .errors import TunerError
from .explore import explorer_for
from .slots import SlotPool
from .spec import StudySpec, build_problem
from .storage import HEARTBEAT_S, storage_errors
from .studies import BUDGET_ATTR, claims_for, join_study, space_of
from .study import StudySummary, TrialOutcome, run_trials, summarize

__all__ = ["run_local_workers", "work"]

log = logging.getLogger(__name__)


def work(
    storage_url: str,
    study_name: str,
    *,
    trials: int | None = None,
    gpus: int | None = None,
    heartbeat_s: int = HEARTBEAT_S,
    seed: int | None = None,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None = None,
) -> StudySummary:
    """``tuner worker``: run trials of a shared study until its budget is finished.

    ``gpus``: the GPUs this worker places candidates on (default: the spec's fleet); used
    by backends that accept a :class:`~backends.base.MeasureContext`.
    """
    if seed is None:  # workers must not all draw the same candidates
        seed = (os.getpid() * 7919 + time.time_ns()) % 2**31
    spec, study, storage = join_study(storage_url, study_name, heartbeat_s=heartbeat_s, seed=seed)
    problem = build_problem(spec)
    space = space_of(spec)
    backend = backends.create(spec.backend.name, dict(spec.backend.options))
    n_trials = trials or int(study.user_attrs.get(BUDGET_ATTR, spec.study.trials))
    per_node = spec.hardware.gpus_per_node
    total = gpus or spec.hardware.gpus
    slots = SlotPool(nodes=-(-total // per_node), gpus_per_node=min(per_node, total))
    with storage_errors(storage_url):
        return run_trials(
            study,
            space=space,
            backend=backend,
            problem=problem,
            sla=spec.sla,
            objective=spec.study.objective,
            n_trials=n_trials,
            on_trial=on_trial,
            claims=claims_for(storage, study),
            slots=slots,
            explorer=explorer_for(spec.study.explore_after, space, problem, backend, seed=seed),
        )


def _die_with_parent() -> None:
    """In a worker child: get SIGTERM when `tuner tune` dies (even by kill -9), so no worker
    outlives the command that resumes the study (Linux; elsewhere a no-op)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_local_workers(spec: StudySpec, workers: int, study: optuna.Study) -> StudySummary:
    """Start ``workers`` local ``tuner worker`` processes on the study and wait for them."""
    cmd = [
        sys.executable,
        "-m",
        "tuner.cli",
        "worker",
        "--storage",
        spec.storage_url(),
        "--study",
        spec.study_name(),
        "--quiet",
    ]
    procs = [
        subprocess.Popen([*cmd, "--seed", str(spec.study.seed + i)], preexec_fn=_die_with_parent)
        for i in range(workers)
    ]
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
