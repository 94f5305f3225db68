"""A tuning run end to end: open (or resume) the study, run trials, write the run directory.

The study's storage and what is kept with it live in :mod:`tuner.studies`; workers in
:mod:`tuner.workers`; the run directory's files in :mod:`tuner.rundir`.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

import backends
import search_spaces
from serving import Deployment, LoadPoint, Problem

from .errors import ConfigError, TunerError
from .guided import GuidanceReport, GuidedProposer
from .heartbeats import Heartbeats, fail_and_retry
from .outages import StorageOutage
from .painter import ChartPainter
from .pick import Pick
from .results import MeasuredPoint
from .rundir import RunData, finalize
from .screen import Screening, screen
from .search.loop import TrialLoop
from .search.proposers import Proposer, QueueProposer
from .search.record import load_measured, records
from .search.strategy import Context, RunMode, build_proposers
from .search.task import Task, feasible_set
from .spec import StudySpec, build_problem
from .storage import open_storage, storage_errors
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
from .study import StudySummary, TrialOutcome
from .workers import run_local_workers
from .write_behind import WriteBehind

__all__ = ["TuneResult", "tune"]

log = logging.getLogger(__name__)


def _enqueue_grid(
    study: optuna.Study,
    space: search_spaces.SearchSpace,
    problem: Problem,
    backend: backends.Backend,
    limit: int,
) -> int:
    """Queue the first ``limit`` feasible candidates once (a first run only), as a shared
    grid run does before its workers start; the number queued."""
    if study.get_trials(deepcopy=False):
        return 0
    grid = QueueProposer("grid", feasible_set(space, problem, backend).deployments[:limit])
    return _queue_ahead(study, space, [grid])


def _queue_ahead(study: optuna.Study, space: search_spaces.SearchSpace, proposers: list[Proposer]) -> int:
    """Queue every proposal of the fixed proposers in the study (see
    :attr:`RunMode.queues_ahead`); the number queued."""
    n = 0
    for proposer in proposers:
        if isinstance(proposer, QueueProposer):
            for dep in proposer.drain():
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
    a :class:`WriteBehind` twin (:class:`~tuner.search.strategy.RunMode`).
    """
    problem = build_problem(spec)
    space = search_spaces.load_space(default_preset(spec, problem), dict(spec.search_space.overrides))
    backend = backends.create(spec.backend.name, dict(spec.backend.options))
    task = Task(problem=problem, space=space, backend=backend, sla=spec.sla, objective=spec.study.objective)
    mode = RunMode.of(spec, instant=backend.capabilities.instant, workers=workers)
    url = spec.storage_url()
    _writable_run_dir(Path(spec.output_dir))
    with _run_lock(Path(spec.output_dir)), storage_errors(url), _painter(mode) as painter:
        # The storage opens after the screening, not in a thread beside it: opening is
        # mostly Python (SQLAlchemy's and Alembic's imports, the schema), so a thread only
        # contends for the GIL with the screening (measured: 6% slower in all).
        screened = screen(task) if mode.screens else None
        storage = open_storage(url)
        study = open_study(spec, storage, candidates=task.feasible.candidates)
        if spec.study.storage is None:  # the run directory's own study: we hold its lock
            _retry_orphans(study, storage)
        buffer = WriteBehind(study, url=url) if mode.buffered else None
        mark_writer(study, buffered=buffer is not None)  # workers refuse a buffered run
        work = buffer.memory if buffer else study
        mode = dataclasses.replace(mode, resume=bool(work.get_trials(deepcopy=False)))
        proposers = build_proposers(_context(spec, task, mode, work, screened))
        n_trials = _budget(spec, mode, proposers)
        if mode.queues_ahead:
            _queue_ahead(work, space, proposers)
        study.set_user_attr(BUDGET_ATTR, n_trials)
        study.set_user_attr(BACKEND_ATTR, backend.describe())
        if on_start is not None:
            on_start(sum(t.state.is_finished() for t in work.get_trials(deepcopy=False)), n_trials)
        if workers > 1:
            summary = run_local_workers(spec, workers, study)
        else:
            heartbeats = None if buffer else heartbeats_for(storage, study)
            loop = TrialLoop(
                work,
                task,
                proposers=proposers,
                on_trial=_after_trial(buffer, on_trial),
                distinct=len(screened.ranked) if screened and buffer and not mode.resume else None,
                claims=None if buffer else claims_for(storage, study),
                log_dir=str(Path(spec.output_dir) / "logs"),
                heartbeats=heartbeats,
                outage=None if buffer else _outage(url, heartbeats),
            )
            summary = _run_here(loop, n_trials, buffer)
        if on_measured is not None:
            on_measured()
        # A buffered twin holds every trial: a writer stores them while the outputs are written.
        if buffer is not None:
            buffer.flush_behind()
        run = RunData(spec=spec, study=study, points=load_measured(work), trials=len(work.trials))
        try:
            pick, reason = finalize(
                run, spec.sla, Path(spec.output_dir), backend_info=backend.describe(), painter=painter
            )
        finally:
            if buffer is not None:
                buffer.flush()
        study.set_user_attr(WRITER_ATTR, None)
    guided = next((p for p in proposers if isinstance(p, GuidedProposer)), None) if workers == 1 else None
    guidance = guided.guide.report() if guided is not None else None
    if guidance is not None:
        log.info(guidance.summary())
    return TuneResult(study, summary, run.points, pick, reason, None if mode.resume else screened, guidance)


def _painter(mode: RunMode) -> AbstractContextManager[ChartPainter | None]:
    """A chart process warming up while an instant run searches (its charts are then the
    last thing it waits for); none for a live run, whose trials take minutes."""
    return ChartPainter() if mode.buffered else nullcontext(None)


def _context(
    spec: StudySpec, task: Task, mode: RunMode, study: optuna.Study, screened: Screening | None
) -> Context:
    measured: list[tuple[Deployment, list[LoadPoint]]] = []
    if mode.guides:  # a resumed guided run refits on what was measured before
        by_trial: dict[int, tuple[Deployment, list[LoadPoint]]] = {}
        for m in load_measured(study):
            by_trial.setdefault(m.trial, (m.deployment, []))[1].append(m.point)
        measured = list(by_trial.values())
    tried: frozenset[str] = frozenset()
    if mode.grid and mode.resume:  # an interrupted grid continues with what no trial holds
        tried = frozenset(dep.key() for r in records(study) if (dep := r.deployment) is not None)
    return Context(
        task=task,
        mode=mode,
        budget=spec.study.trials,
        seed=spec.study.seed,
        explore_after=spec.study.explore_after,
        screening=screened,
        measured=measured,
        tried=tried,
    )


def _budget(spec: StudySpec, mode: RunMode, proposers: list[Proposer]) -> int:
    """The trial budget: the spec's, or on a grid's first run its size when smaller."""
    grid = next((p for p in proposers if p.name == "grid" and isinstance(p, QueueProposer)), None)
    if grid is None or mode.resume or not grid.size:
        return spec.study.trials
    return min(spec.study.trials, grid.size)


def _after_trial(
    buffer: WriteBehind | None, on_trial: Callable[[TrialOutcome, StudySummary], None] | None
) -> Callable[[TrialOutcome, StudySummary], None]:
    def after_trial(outcome: TrialOutcome, summary: StudySummary) -> None:
        if buffer is not None:
            buffer.maybe_flush()
        if on_trial is not None:
            on_trial(outcome, summary)

    return after_trial


def _run_here(loop: TrialLoop, n_trials: int, buffer: WriteBehind | None) -> StudySummary:
    """Run the loop; the caller flushes a buffer while the chart is drawn, unless the run
    is interrupted (then every finished trial is flushed now)."""
    try:
        return loop.run(n_trials)
    except BaseException:
        if buffer is not None:  # keep every finished trial of an interrupted run
            buffer.flush()
        raise


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
