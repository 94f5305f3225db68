"""A tuning run end to end: open (or resume) the study, run trials, write the run directory.

Also reads a finished run back from its storage for ``tuner show``, ``pick`` and ``export``,
and lets a worker join a shared study (``tuner worker``): the spec, the search space and the
tool version are stored with the study, so the storage alone is enough, and a worker of
another version or space refuses to join.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

import backends
import search_spaces
from serving import Problem

from . import __version__
from .errors import ConfigError, NoFeasiblePick, StorageError, StudyMismatch, TunerError
from .front import pareto_front
from .outputs import pick_document, write_csv, write_pick_yaml
from .pick import Pick, pick_best
from .plot import plot_front
from .results import MeasuredPoint
from .samplers import make_sampler
from .screen import Screening, screen
from .sla import SLA
from .slots import SlotPool
from .spec import StudySpec, build_problem, parse_spec
from .storage import HEARTBEAT_S, Claims, WriteBehind, open_storage, redact, storage_errors
from .study import StudySummary, TrialOutcome, load_measured, run_trials, summarize

__all__ = ["RunData", "default_preset", "finalize", "join_study", "load_run", "open_study", "tune", "work"]

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)
SPEC_ATTR = "spec"
#: Study user attributes besides the spec: the tool version, the resolved search space and
#: the trial budget of the last `tuner tune` (what workers run up to).
VERSION_ATTR = "tuner_version"
SPACE_ATTR = "search_space"
BUDGET_ATTR = "trials"
#: Spec fields that may change between runs of one study without changing its meaning.
_FREE_STUDY_FIELDS = ("sampler", "trials", "seed", "storage", "name")
#: With an instant backend, up to 1/WARM_START_SHARE of the trial budget starts from the
#: screened best candidates; the sampler explores with the rest.
WARM_START_SHARE = 5


def fingerprint(spec: StudySpec) -> dict[str, Any]:
    """The parts of a spec that define the problem; a resume must not change them."""
    data = spec.to_dict()
    data.pop("output_dir")
    data["study"] = {k: v for k, v in data["study"].items() if k not in _FREE_STUDY_FIELDS}
    return data


def default_preset(spec: StudySpec, problem: Problem) -> str:
    if spec.search_space.preset:
        return spec.search_space.preset
    return "moe-multi-node" if problem.arch.is_moe else "dense-single-node"


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study, or load it when it exists with the same problem (resume)."""
    directions: list[optuna.study.StudyDirection] = [optuna.study.StudyDirection.MAXIMIZE] * (
        1 if spec.study.objective == "sla" else 2
    )
    sampler = make_sampler(spec.study.sampler, seed=spec.study.seed)
    url = spec.storage_url()
    with storage_errors(url):
        study = optuna.create_study(
            storage=storage if storage is not None else open_storage(url),
            study_name=spec.study_name(),
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
            study.set_user_attr(VERSION_ATTR, __version__)
            study.set_user_attr(SPACE_ATTR, _space(spec).to_dict())
            return study
    if fingerprint(parse_spec(stored)) != fingerprint(spec):
        raise StudyMismatch(
            f"study '{spec.study_name()}' in {redact(url)} was created from a different spec "
            "(model, hardware, workload, SLA, search space or backend differ); "
            "use another output_dir or study.name"
        )
    _check_compatible(study, spec)
    return study


def _space(spec: StudySpec) -> search_spaces.SearchSpace:
    return search_spaces.load_space(
        default_preset(spec, build_problem(spec)), dict(spec.search_space.overrides)
    )


def _check_compatible(study: optuna.Study, spec: StudySpec) -> None:
    """Refuse a study made by another tool version or from another resolved search space
    (a preset file that changed between versions)."""
    version = study.user_attrs.get(VERSION_ATTR)
    if version is not None and version != __version__:
        raise StudyMismatch(
            f"study '{study.study_name}' was created by tuner {version}; this is tuner {__version__}: "
            f"run tuner {version} to join or resume it (pip install llm-serving-tuner=={version})"
        )
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is not None and stored != _space(spec).to_dict():
        raise StudyMismatch(
            f"study '{study.study_name}' was created with another search space than this tuner's "
            f"preset '{default_preset(spec, build_problem(spec))}' resolves to; run the study's tuner version"
        )


def join_study(
    storage_url: str, study_name: str, *, heartbeat_s: int | None = HEARTBEAT_S, seed: int | None = None
) -> tuple[StudySpec, optuna.Study, optuna.storages.BaseStorage]:
    """Load a shared study for a worker: the spec comes from the study; the tool version and
    search space must match (:class:`StudyMismatch` otherwise)."""
    with storage_errors(storage_url):
        storage = open_storage(storage_url, heartbeat_s=heartbeat_s)
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        if study_name not in names:
            raise ConfigError(
                "--study",
                study_name,
                f"allowed: {', '.join(names) or 'no study in this storage'}"
                " (create it with `tuner tune SPEC --storage URL --study NAME`)",
            )
        probe = optuna.load_study(study_name=study_name, storage=storage)
        spec = parse_spec(probe.user_attrs[SPEC_ATTR])
        sampler = make_sampler(spec.study.sampler, seed=spec.study.seed if seed is None else seed)
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    _check_compatible(study, spec)
    return spec, study, storage


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
    space = _space(spec)
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
            claims=_claims(storage, study),
            slots=slots,
        )


def _claims(storage: optuna.storages.BaseStorage, study: optuna.Study) -> Claims | None:
    """The claim table of an RDB study (none through the gRPC proxy: see README)."""
    if not isinstance(storage, optuna.storages.RDBStorage):
        return None
    return Claims(storage, storage.get_study_id_from_name(study.study_name))


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


def tune(
    spec: StudySpec,
    *,
    on_trial: Callable[[TrialOutcome, StudySummary], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> TuneResult:
    """Run (or resume) the study of ``spec`` and write its run directory.

    ``workers`` > 1 starts that many ``tuner worker`` processes on the study and waits for
    them. A study in a shared storage (``study.storage``) or with several workers is written
    directly; a single process on the run directory's SQLite with an instant backend runs on
    a :class:`WriteBehind` twin.
    """
    problem = build_problem(spec)
    space = search_spaces.load_space(default_preset(spec, problem), dict(spec.search_space.overrides))
    backend = backends.create(spec.backend.name, dict(spec.backend.options))
    url = spec.storage_url()
    try:
        Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"run directory {spec.output_dir}: {exc.strerror or exc}") from exc
    shared = workers > 1 or spec.study.storage is not None
    with _run_lock(Path(spec.output_dir)), storage_errors(url):
        storage = open_storage(url, heartbeat_s=HEARTBEAT_S)
        study = open_study(spec, storage)
        if spec.study.storage is None:  # the run directory's own study: we hold its lock
            _retry_orphans(study)
        buffer = WriteBehind(study) if getattr(backend, "instant", False) and not shared else None
        work = buffer.memory if buffer else study
        n_trials, screening = _prepare(spec, work, space, problem, backend, first=not work.trials)
        study.set_user_attr(BUDGET_ATTR, n_trials)
        if on_start is not None:
            on_start(sum(t.state.is_finished() for t in work.get_trials(deepcopy=False)), n_trials)
        if workers > 1:
            summary = _run_workers(spec, workers, study)
        else:
            summary = _run_here(
                work,
                buffer,
                spec,
                space=space,
                backend=backend,
                problem=problem,
                n_trials=n_trials,
                on_trial=on_trial,
                claims=None if buffer else _claims(storage, study),
                distinct=screening.feasible if screening and buffer else None,
            )
        run = RunData(spec=spec, study=study, points=load_measured(study))
    pick, reason = finalize(run, spec.sla, Path(spec.output_dir), backend_info=backend.describe())
    return TuneResult(study, summary, run.points, pick, reason, screening)


def _prepare(
    spec: StudySpec,
    work: optuna.Study,
    space: search_spaces.SearchSpace,
    problem: Problem,
    backend: backends.Backend,
    *,
    first: bool,
) -> tuple[int, Screening | None]:
    """The trial budget, after queueing the grid or the screened warm start (first run)."""
    n_trials = spec.study.trials
    if spec.study.sampler == "grid":
        queued = _enqueue_grid(work, space, problem, backend, n_trials)
        return (min(n_trials, queued) if queued else n_trials), None
    if getattr(backend, "instant", False) and first:
        # First run on an instant backend: start from the screened best and front.
        screening = screen(space, problem, backend, spec.sla, spec.study.objective)
        for dep in screening.warm_start(max(1, n_trials // WARM_START_SHARE)):
            work.enqueue_trial(space.params(dep), skip_if_exists=False)
        return n_trials, screening
    return n_trials, None


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
) -> StudySummary:
    def after_trial(outcome: TrialOutcome, summary: StudySummary) -> None:
        if buffer is not None:
            buffer.maybe_flush()
        if on_trial is not None:
            on_trial(outcome, summary)

    try:
        return run_trials(
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
        )
    finally:
        if buffer is not None:
            buffer.flush()


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """One `tuner tune` per run directory: the holder may fail the trials a killed run left."""
    with open(run_dir / ".tuner.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TunerError(
                f"another `tuner tune` is running in {run_dir}; wait for it or use another "
                "output directory (workers join with `tuner worker`)"
            ) from None
        yield


def _retry_orphans(study: optuna.Study) -> None:
    """Trials a killed single-process run left RUNNING: failed ("interrupted: the process was
    killed") and queued again, keeping the points they stored (the retry measures the rest)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "interrupted: the process was killed")
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        keep = {k: v for k, v in t.user_attrs.items() if k in ("deployment", "label", "points")}
        history = [*t.system_attrs.get("retry_history", []), t.number]
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=t.params,
                distributions=t.distributions,
                user_attrs=keep,
                system_attrs={"failed_trial": history[0], "retry_history": history},
            )
        )
        log.info("trial %d was left running by a killed run: failed and queued again", t.number)


def _die_with_parent() -> None:
    """In a worker child: get SIGTERM when `tuner tune` dies (even by kill -9), so no worker
    outlives the command that resumes the study (Linux; elsewhere a no-op)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run_workers(spec: StudySpec, workers: int, study: optuna.Study) -> StudySummary:
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


@dataclass
class RunData:
    spec: StudySpec
    study: optuna.Study
    points: list[MeasuredPoint]


def load_run(run: str | None, *, storage: str | None = None, study_name: str | None = None) -> RunData:
    """A run from its directory (``RUN/study.db``) or from a storage URL and study name."""
    if storage is None:
        if run is None or not (Path(run) / "study.db").is_file():
            raise ConfigError("RUN", run, "must be a run directory holding study.db (or give --storage)")
        storage = f"sqlite:///{(Path(run) / 'study.db').resolve()}"
    with storage_errors(storage):
        opened = open_storage(storage)
        names = [s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False)]
        if study_name is None:
            if len(names) != 1:
                raise ConfigError(
                    "--study", None, f"required: the storage holds {len(names)} studies ({', '.join(names)})"
                )
            study_name = names[0]
        if study_name not in names:
            raise ConfigError(
                "--study", study_name, f"allowed: {', '.join(names) or 'no study in this storage'}"
            )
        study = optuna.load_study(study_name=study_name, storage=opened)
        spec = parse_spec(study.user_attrs[SPEC_ATTR])
        return RunData(spec=spec, study=study, points=load_measured(study))


def finalize(
    run: RunData,
    sla: SLA,
    out_dir: Path,
    *,
    backend_info: dict[str, Any] | None = None,
) -> tuple[Pick | None, str | None]:
    """Write points.csv, front.csv, pareto.png and, when the SLA can be met, pick.yaml and
    deploy/. Returns the pick, or None with the reason it could not be made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "points.csv", run.points)
    write_csv(out_dir / "front.csv", pareto_front(run.points))
    try:
        pick: Pick | None = pick_best(run.points, sla)
        reason = None
    except NoFeasiblePick as exc:
        pick, reason = None, str(exc)
    spec = run.spec
    title = (
        f"{spec.model} {spec.precision} on {spec.hardware.gpus} x {spec.hardware.gpu}, "
        f"ISL {spec.workload.isl} / OSL {spec.workload.osl}, {spec.backend.name}"
    )
    plot_front(out_dir / "pareto.png", run.points, sla=sla, pick=pick, title=title)
    if pick is None:
        (out_dir / "pick.yaml").unlink(missing_ok=True)
        return None, reason
    study_info = {
        "name": run.study.study_name,
        "storage": spec.storage_url(),
        "sampler": spec.study.sampler,
        "seed": spec.study.seed,
        "objective": spec.study.objective,
        "trials": len(run.study.trials),
    }
    doc = pick_document(
        pick, spec=spec.to_dict(), backend=backend_info or {"name": spec.backend.name}, study=study_info
    )
    write_pick_yaml(out_dir / "pick.yaml", doc)
    _export(pick, spec, out_dir / "deploy")
    return pick, None


def _export(pick: Pick, spec: StudySpec, out: Path) -> None:
    from .export import write_exports

    write_exports(pick.chosen.deployment, build_problem(spec), out)
