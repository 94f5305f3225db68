"""A tuning run end to end: open (or resume) the study, run trials, write the run directory.

The study's storage and what is kept with it live in :mod:`tuner.studies`; workers in
:mod:`tuner.workers`; the run directory's files in :mod:`tuner.rundir`.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import optuna
from optuna.trial import TrialState

import backends
import search_spaces
from serving import Deployment, LoadPoint, Problem

from .errors import ConfigError, TunerError
from .explore import explorer_for
from .guided import GuidanceReport, GuidedQueue, GuidedSearch
from .heartbeats import Heartbeats, fail_and_retry
from .outages import StorageOutage
from .pick import Pick
from .results import MeasuredPoint
from .rundir import RunData, finalize
from .screen import Screening, screen
from .spec import StudySpec, build_problem
from .storage import Claims, open_storage, storage_errors
from .studies import (
    BACKEND_ATTR,
    BUDGET_ATTR,
    WRITER_ATTR,
    claims_for,
    default_preset,
    heartbeats_for,
    mark_writer,
    open_study,
)
from .study import StudySummary, TrialOutcome, load_measured, run_trials
from .workers import run_local_workers
from .write_behind import WriteBehind

__all__ = ["TuneResult", "tune"]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: With an instant backend, up to 1/WARM_START_SHARE of the trial budget starts from the
#: screened best candidates; the sampler explores with the rest.
WARM_START_SHARE = 5


def _enqueue_grid(
    study: optuna.Study,
    space: search_spaces.SearchSpace,
    problem: Problem,
    backend: backends.Backend,
    limit: int,
) -> int:
    """Exhaustive sampler: queue every feasible candidate once (first run only)."""
    if study.get_trials(deepcopy=False):
        return 0
    n = 0
    for dep in space.candidates(problem):
        if n >= limit:
            break
        if search_spaces.infeasible_reason(dep, problem) or backend.check(dep, problem):
            continue
        study.enqueue_trial(space.params(dep), skip_if_exists=False)
        n += 1
    return n


@dataclass
class TuneResult:
    study: optuna.Study
    summary: StudySummary
    points: list[MeasuredPoint]
    pick: Pick | None
    no_pick_reason: str | None
    screening: Screening | None = None
    guidance: GuidanceReport | None = None


def tune(
    spec: StudySpec,
    *,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_measured: Callable[[], None] | None = None,
    workers: int = 1,
) -> TuneResult:
    """Run (or resume) the study of ``spec`` and write its run directory.

    Callbacks: ``on_start(finished, budget)`` before the first trial, ``on_trial`` after
    each, ``on_measured()`` when measuring is over and the outputs are about to be written.

    ``workers`` > 1 starts that many ``tuner worker`` processes on the study and waits for
    them. A study in a shared storage (``study.storage``) or with several workers is written
    directly; a single process on the run directory's SQLite with an instant backend runs on
    a :class:`WriteBehind` twin.
    """
    problem = build_problem(spec)
    space = search_spaces.load_space(default_preset(spec, problem), dict(spec.search_space.overrides))
    backend = backends.create(spec.backend.name, dict(spec.backend.options))
    url = spec.storage_url()
    _writable_run_dir(Path(spec.output_dir))
    shared = workers > 1 or spec.study.storage is not None
    with _run_lock(Path(spec.output_dir)), storage_errors(url):
        # Opening a storage is mostly waiting (imports, schema, fsync): it runs in a thread
        # while an instant backend screens the space, which the first run needs.
        opening = _Background(lambda: open_storage(url))
        screened = _screen(spec, space, problem, backend)
        storage = opening.result()
        study = open_study(spec, storage, candidates=screened.candidates if screened else None)
        if spec.study.storage is None:  # the run directory's own study: we hold its lock
            _retry_orphans(study, storage)
        buffer = WriteBehind(study, url=url) if backend.capabilities.instant and not shared else None
        mark_writer(study, buffered=buffer is not None)  # workers refuse a buffered run
        work = buffer.memory if buffer else study
        n_trials, screening = _prepare(
            spec, work, space, problem, backend, screened if not work.trials else None
        )
        study.set_user_attr(BUDGET_ATTR, n_trials)
        study.set_user_attr(BACKEND_ATTR, backend.describe())
        if on_start is not None:
            on_start(sum(t.state.is_finished() for t in work.get_trials(deepcopy=False)), n_trials)
        guide = _guide(spec, study, space, problem, backend, n_trials) if workers == 1 else None
        if workers > 1:
            summary = run_local_workers(spec, workers, study)
        else:
            heartbeats = None if buffer else heartbeats_for(storage, study)
            summary = _run_here(
                work,
                buffer,
                spec,
                heartbeats=heartbeats,
                outage=None if buffer else _outage(url, heartbeats),
                guide=guide,
                space=space,
                backend=backend,
                problem=problem,
                n_trials=n_trials,
                on_trial=on_trial,
                claims=None if buffer else claims_for(storage, study),
                distinct=screening.feasible if screening and buffer else None,
                feasible=screened.ranked if screened else None,
            )
        if on_measured is not None:
            on_measured()
        # A buffered twin holds every trial; its flush overlaps with drawing the chart.
        run = RunData(spec=spec, study=study, points=load_measured(work))
        pick, reason = finalize(
            run,
            spec.sla,
            Path(spec.output_dir),
            backend_info=backend.describe(),
            while_drawing=buffer.flush if buffer else None,
        )
        study.set_user_attr(WRITER_ATTR, None)
    guidance = guide.guide.report() if guide is not None else None
    if guidance is not None:
        log.info(guidance.summary())
    return TuneResult(study, summary, run.points, pick, reason, screening, guidance)


def _guide(
    spec: StudySpec,
    study: optuna.Study,
    space: search_spaces.SearchSpace,
    problem: Problem,
    backend: backends.Backend,
    budget: int,
) -> GuidedQueue | None:
    """Simulator guidance for a live backend (``study.guided``; not for the grid sampler,
    which measures everything anyway, nor for an instant backend, which screens instead)."""
    if not spec.study.guided or spec.study.sampler == "grid" or backend.capabilities.instant:
        return None
    guide = GuidedQueue(GuidedSearch(space, problem, spec.sla, spec.study.objective), study, space, budget)
    by_trial: dict[int, tuple[Deployment, list[LoadPoint]]] = {}
    for m in load_measured(study):
        by_trial.setdefault(m.trial, (m.deployment, []))[1].append(m.point)
    guide.start(list(by_trial.values()))
    return guide


def _prepare(
    spec: StudySpec,
    work: optuna.Study,
    space: search_spaces.SearchSpace,
    problem: Problem,
    backend: backends.Backend,
    screening: Screening | None,
) -> tuple[int, Screening | None]:
    """The trial budget, after queueing the grid, or the screened warm start (``screening``
    is given on the first run of an instant backend only)."""
    n_trials = spec.study.trials
    if spec.study.sampler == "grid":
        queued = _enqueue_grid(work, space, problem, backend, n_trials)
        return (min(n_trials, queued) if queued else n_trials), None
    if screening is not None:
        # First run on an instant backend: start from the screened best and front.
        for dep in screening.warm_start(max(1, n_trials // WARM_START_SHARE)):
            work.enqueue_trial(space.params(dep), skip_if_exists=False)
    return n_trials, screening


def _screen(
    spec: StudySpec, space: search_spaces.SearchSpace, problem: Problem, backend: backends.Backend
) -> Screening | None:
    """Price the whole feasible space when the backend is instant (not for the grid, which
    measures all of it anyway)."""
    if spec.study.sampler == "grid" or not backend.capabilities.instant:
        return None
    return screen(space, problem, backend, spec.sla, spec.study.objective)


class _Background(Generic[T]):
    """Run ``fn`` in a thread now; :meth:`result` waits and returns it or raises its error."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._value: list[T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._value.append(fn())
        except BaseException as exc:  # handed to the caller by result()
            self._error.append(exc)

    def result(self) -> T:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._value[0]


def _run_here(
    work: optuna.Study,
    buffer: WriteBehind | None,
    spec: StudySpec,
    *,
    space: search_spaces.SearchSpace,
    backend: backends.Backend,
    problem: Problem,
    n_trials: int,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None,
    claims: Claims | None,
    distinct: int | None,
    guide: GuidedQueue | None = None,
    feasible: list[Deployment] | None = None,
    heartbeats: Heartbeats | None = None,
    outage: StorageOutage | None = None,
) -> StudySummary:
    def after_trial(outcome: TrialOutcome, summary: StudySummary) -> None:
        if buffer is not None:
            buffer.maybe_flush()
        if guide is not None:
            guide.after_trial(
                outcome.deployment, outcome.points, outcome.state == "measured", outcome.state == "failed"
            )
        if on_trial is not None:
            on_trial(outcome, summary)

    try:
        summary = run_trials(
            work,
            space=space,
            backend=backend,
            problem=problem,
            sla=spec.sla,
            objective=spec.study.objective,
            n_trials=n_trials,
            on_trial=after_trial,
            distinct=distinct,
            claims=claims,
            log_dir=str(Path(spec.output_dir) / "logs"),
            explorer=explorer_for(
                spec.study.explore_after, space, problem, backend, seed=spec.study.seed, candidates=feasible
            ),
            heartbeats=heartbeats,
            outage=outage,
        )
    except BaseException:
        if buffer is not None:  # keep every finished trial of an interrupted run
            buffer.flush()
        raise
    return summary  # the caller flushes a buffer while the chart is drawn


def _writable_run_dir(run_dir: Path) -> None:
    """Create the run directory, or refuse one we cannot write in (a run cannot be tuned or
    resumed there; `tuner show` and `tuner pick --out` still read it)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".tuner.lock"
        probe.touch()
        if not os.access(run_dir, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(run_dir))
    except OSError as exc:
        allowed = f"must be a directory we can write ({exc.strerror or exc})"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            allowed += "; a read-only run can still be shown and re-picked: tuner pick RUN --out DIR"
        raise ConfigError("output_dir (--out)", str(run_dir), allowed) from None


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """One `tuner tune` per run directory: the holder may fail the trials a killed run left."""
    with open(run_dir / ".tuner.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TunerError(
                f"another `tuner tune` is running in {run_dir}; wait for it or use another output "
                "directory (to run one study in several processes, start it with "
                "`tuner tune SPEC --workers N`, or with --storage postgresql://... and `tuner worker`)"
            ) from None
        yield


def _outage(url: str, heartbeats: Heartbeats | None) -> StorageOutage:
    """Storage calls of this run ride out a restart; afterwards the heartbeats start
    watching afresh, so trials of workers that rode out the same outage are not failed."""
    return StorageOutage(url, on_recover=heartbeats.forget if heartbeats is not None else None)


def _retry_orphans(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Trials a killed single-process run left RUNNING: failed ("interrupted: the process was
    killed") and queued again, keeping the points they stored (the retry measures the rest)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        fail_and_retry(study, storage, t, "interrupted: the process was killed", max_retry=None)
        log.info("trial %d was left running by a killed run: failed and queued again", t.number)
