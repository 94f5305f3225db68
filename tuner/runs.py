"""A tuning run end to end: open (or resume) the study, run trials, write the run directory.

Also reads a finished run back from its storage for ``tuner show``, ``pick`` and ``export``:
the spec is stored with the study, so the storage alone is enough.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

import backends
import search_spaces
from serving import Problem

from .errors import ConfigError, NoFeasiblePick, StudyMismatch
from .front import pareto_front
from .outputs import pick_document, write_csv, write_pick_yaml
from .pick import Pick, pick_best
from .plot import plot_front
from .results import MeasuredPoint
from .samplers import make_sampler
from .sla import SLA
from .screen import Screening, screen
from .spec import StudySpec, build_problem, parse_spec
from .storage import WriteBehind, open_storage
from .study import StudySummary, TrialOutcome, load_measured, run_trials

__all__ = ["RunData", "default_preset", "finalize", "load_run", "open_study", "tune"]

log = logging.getLogger(__name__)
SPEC_ATTR = "spec"
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


def open_study(spec: StudySpec) -> optuna.Study:
    """Create the study, or load it when it exists with the same problem (resume)."""
    directions = ["maximize"] if spec.study.objective == "sla" else ["maximize", "maximize"]
    sampler = make_sampler(spec.study.sampler, seed=spec.study.seed)
    study = optuna.create_study(
        storage=open_storage(spec.storage_url()),
        study_name=spec.study_name(),
        directions=directions,
        sampler=sampler,
        load_if_exists=True,
    )
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    elif fingerprint(parse_spec(stored)) != fingerprint(spec):
        raise StudyMismatch(
            f"study '{spec.study_name()}' in {spec.storage_url()} was created from a different spec "
            "(model, hardware, workload, SLA, search space or backend differ); "
            "use another output_dir or study.name"
        )
    return study


def _enqueue_grid(study: optuna.Study, space: search_spaces.SearchSpace, problem: Problem,
                  backend: backends.Backend, limit: int) -> int:
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


def tune(spec: StudySpec, *, on_trial: Callable[[TrialOutcome, StudySummary], None] | None = None,
         on_start: Callable[[int, int], None] | None = None) -> TuneResult:
    """Run (or resume) the study of ``spec`` and write its run directory."""
    problem = build_problem(spec)
    space = search_spaces.load_space(default_preset(spec, problem), dict(spec.search_space.overrides))
    backend = backends.create(spec.backend.name, dict(spec.backend.options))
    Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
    study = open_study(spec)
    # Instant backends run on an in-memory twin flushed to storage every few seconds.
    buffer = WriteBehind(study) if getattr(backend, "instant", False) else None
    work = buffer.memory if buffer else study
    n_trials = spec.study.trials
    screening = None
    if spec.study.sampler == "grid":
        queued = _enqueue_grid(work, space, problem, backend, n_trials)
        n_trials = min(n_trials, queued) if queued else n_trials
    elif buffer is not None and not work.trials:
        # First run on an instant backend: start from the screened best and front.
        screening = screen(space, problem, backend, spec.sla, spec.study.objective)
        for dep in screening.warm_start(max(1, n_trials // WARM_START_SHARE)):
            work.enqueue_trial(space.params(dep), skip_if_exists=False)
    if on_start is not None:
        on_start(sum(t.state.is_finished() for t in work.get_trials(deepcopy=False)), n_trials)

    def after_trial(outcome: TrialOutcome, summary: StudySummary) -> None:
        if buffer is not None:
            buffer.maybe_flush()
        if on_trial is not None:
            on_trial(outcome, summary)

    try:
        summary = run_trials(work, space=space, backend=backend, problem=problem, sla=spec.sla,
                             objective=spec.study.objective, n_trials=n_trials, on_trial=after_trial,
                             distinct=screening.feasible if screening else None)
    finally:
        if buffer is not None:
            buffer.flush()
    run = RunData(spec=spec, study=study, points=load_measured(study))
    pick, reason = finalize(run, spec.sla, Path(spec.output_dir), backend_info=backend.describe())
    return TuneResult(study, summary, run.points, pick, reason, screening)


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
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise ConfigError("--study", None, f"required: the storage holds {len(names)} studies ({', '.join(names)})")
        study_name = names[0]
    if study_name not in names:
        raise ConfigError("--study", study_name, f"allowed: {', '.join(names) or 'no study in this storage'}")
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    spec = parse_spec(study.user_attrs[SPEC_ATTR])
    return RunData(spec=spec, study=study, points=load_measured(study))


def finalize(run: RunData, sla: SLA, out_dir: Path, *, backend_info: dict[str, Any] | None = None,
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
    title = (f"{spec.model} {spec.precision} on {spec.hardware.gpus} x {spec.hardware.gpu}, "
             f"ISL {spec.workload.isl} / OSL {spec.workload.osl}, {spec.backend.name}")
    plot_front(out_dir / "pareto.png", run.points, sla=sla, pick=pick, title=title)
    if pick is None:
        (out_dir / "pick.yaml").unlink(missing_ok=True)
        return None, reason
    study_info = {"name": run.study.study_name, "storage": spec.storage_url(), "sampler": spec.study.sampler,
                  "seed": spec.study.seed, "objective": spec.study.objective, "trials": len(run.study.trials)}
    doc = pick_document(pick, spec=spec.to_dict(), backend=backend_info or {"name": spec.backend.name},
                        study=study_info)
    write_pick_yaml(out_dir / "pick.yaml", doc)
    _export(pick, spec, out_dir / "deploy")
    return pick, None


def _export(pick: Pick, spec: StudySpec, out: Path) -> None:
    from .export import write_exports

    write_exports(pick.chosen.deployment, build_problem(spec), out)
