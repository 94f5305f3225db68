"""The run directory: read a run back from its storage, and write its files
(``points.csv``, ``front.csv``, ``pareto.png``, ``cost.png``, ``pick.yaml``, ``deploy/``,
and with a plan ``plan.csv`` and ``deploy-plan/``)."""

from __future__ import annotations

import errno
import os
import shutil
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

import backends
from backends.base import ExportsPlan
from serving import Deployment, Problem

from .capacity import ReplicaPlan
from .errors import ConfigError, NoFeasiblePick, OutputError, TunerError
from .objectives import get_objective
from .outputs import pick_document, write_csv, write_pick_yaml
from .painter import ChartPainter
from .pick import Pick, pick_best
from .planning import plans_for, run_price, write_plan_csv
from .plot import chart_title, plot_front
from .plot_cost import plot_cost
from .results import MeasuredPoint
from .sla import SLA
from .spec import StudySpec, build_problem, parse_spec
from .storage import open_storage, storage_errors
from .studies import BACKEND_ATTR, SPEC_ATTR
from .study import load_measured

if TYPE_CHECKING:
    from .export import ExportContext

__all__ = ["ExportOptions", "RunData", "export_context", "finalize", "load_run", "write_plan"]


@dataclass
class RunData:
    """A run as stored: its spec, study and measured points. ``trials``: the study's trial
    count when the stored study may still be catching up (a write-behind run writes its
    outputs while its last trials are copied); None: count the stored study's trials."""

    spec: StudySpec
    study: optuna.Study
    points: list[MeasuredPoint]
    trials: int | None = None


def load_run(run: str | None, *, storage: str | None = None, study_name: str | None = None) -> RunData:
    """A run from its directory (``RUN/study.db``) or from a storage URL and study name."""
    if storage is None:
        if run is None:
            raise TunerError("RUN is required: a run directory holding study.db, or --storage URL")
        if not (Path(run) / "study.db").is_file():
            raise ConfigError("RUN", run, "must be a run directory holding study.db (or give --storage)")
        storage = _run_storage(Path(run))
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


def _run_storage(run: Path) -> str:
    """The SQLite URL of ``run``'s study. A directory we cannot write (a read-only mount, a
    colleague's run) is opened ``immutable``: SQLite then reads without the lock and WAL
    index files it would otherwise create beside the database, so a finished run can be
    shown and re-picked (into another ``--out``) wherever it can be read."""
    db = (run / "study.db").resolve()
    if os.access(db.parent, os.W_OK):
        return f"sqlite:///{db}"
    return f"sqlite:///file:{urllib.parse.quote(str(db))}?immutable=1&uri=true"


def finalize(
    run: RunData,
    sla: SLA,
    out_dir: Path,
    *,
    backend_info: dict[str, Any] | None = None,
    export_options: ExportOptions | None = None,
    painter: ChartPainter | None = None,
) -> tuple[Pick | None, str | None]:
    """Write points.csv, front.csv (the front of the study's objective), pareto.png,
    cost.png (when the GPU has a price) and, when the SLA can be met, pick.yaml and deploy/
    (replaced whole; both removed when nothing meets the SLA, so no file of an earlier pick
    is left to launch), and the spec's plan (plan.csv, deploy-plan/; removed likewise when
    the spec has no plan or nothing meets the SLA). Returns the pick, or None with the reason it could not
    be made. ``backend_info`` (the backend's ``describe()``) defaults to what the run stored
    when it was tuned, so a re-pick keeps the backend block of ``pick.yaml``.

    The charts are drawn in child processes (``painter``: the run's warmed-up one) while
    the rest is written: they are the slowest output.
    """
    try:
        pick: Pick | None = pick_best(run.points, sla)
        reason = None
    except NoFeasiblePick as exc:
        pick, reason = None, str(exc)
    price = run_price(run.spec)
    with _writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        wait_chart = _draw_chart(
            out_dir / "pareto.png",
            run.points,
            sla,
            pick,
            chart_title(run.spec),
            usd_per_gpu_hour=price,
            painter=painter,
        )
        try:
            problem, drafts = _roofline_inputs(run.spec)
            front = get_objective(run.spec.study.objective).front(run.points)
            write_csv(
                out_dir / "points.csv", run.points, price, problem=problem, draft_tokens=drafts, sla=sla
            )
            write_csv(out_dir / "front.csv", front, price, problem=problem, draft_tokens=drafts, sla=sla)
            if pick is None:
                (out_dir / "pick.yaml").unlink(missing_ok=True)
                shutil.rmtree(out_dir / "deploy", ignore_errors=True)
                remove_plan(out_dir)
                return None, reason
            stored = run.study.user_attrs.get(BACKEND_ATTR)
            _write_pick(run, pick, out_dir, backend_info or stored, export_options or ExportOptions())
            plan = run.spec.plan
            if plan is None:
                remove_plan(out_dir)
            else:
                plans = plans_for(run.points, run.spec, sla, plan, usd_per_gpu_hour=price)
                write_plan(run, plans, out_dir, export=plan.export, options=export_options)
        finally:
            wait_chart()
    return pick, None


def _roofline_inputs(spec: StudySpec) -> tuple[Problem | None, int]:
    """The problem the points' speed of light is priced for (None when the spec's model
    or GPU no longer resolves, e.g. a moved local config.json: the column stays blank), and
    the draft tokens per step of the backend's speculative decoding."""
    try:
        problem: Problem | None = build_problem(spec)
    except ConfigError:
        problem = None
    return problem, 1 if spec.backend.options.get("spec_decode") == "mtp" else 0


@contextmanager
def _writing(out_dir: Path) -> Iterator[None]:
    """An OSError while writing the run's files (full disk, read-only directory) becomes one
    :class:`OutputError` line; the study's storage is untouched, so rerunning resumes."""
    try:
        yield
    except OSError as exc:
        path = exc.filename or out_dir
        if exc.errno == errno.ENOSPC:
            hint = "free some space and rerun the command: the stored trials are kept"
        else:
            hint = "write elsewhere with --out DIR"
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; {hint}") from None


def _draw_chart(
    path: Path,
    points: Sequence[MeasuredPoint],
    sla: SLA,
    pick: Pick | None,
    title: str,
    *,
    usd_per_gpu_hour: float | None = None,
    painter: ChartPainter | None = None,
) -> Callable[[], None]:
    """Draw pareto.png (and cost.png beside it, given a price; else an old one is removed: it
    priced another GPU) side by side in a :class:`~tuner.painter.ChartPainter` (the run's
    warmed-up ``painter``, else one started now), and return the function that waits for
    them; draws inline where the painter cannot fork (no fork, or other threads alive: a
    forked child could inherit a lock one of them holds)."""
    kwargs = {"sla": sla, "pick": pick, "title": title}
    charts: list[tuple[Callable[..., None], Path, dict[str, Any]]] = [(plot_front, path, kwargs)]
    cost = path.with_name("cost.png")
    if usd_per_gpu_hour is None:
        cost.unlink(missing_ok=True)
    else:
        charts.append((plot_cost, cost, {**kwargs, "usd_per_gpu_hour": usd_per_gpu_hour}))
    chosen = painter if painter is not None and painter.ready else ChartPainter()
    if chosen.ready:
        return _painted(chosen.draw([(plot, where, points, kw) for plot, where, kw in charts]), charts)
    for plot, where, kw in charts:
        plot(where, points, **kw)
    return lambda: None


def _painted(wait: Callable[[], list[Any]], charts: Sequence[tuple[Any, Path, Any]]) -> Callable[[], None]:
    """The waiter for charts drawn by a :class:`~tuner.painter.ChartPainter`: a failed chart
    is raised as here (an OSError with its errno, else one line)."""

    def done() -> None:
        for (_, where, _), result in zip(charts, wait(), strict=True):
            if result is None:
                continue
            code, message = result
            if code:
                raise OSError(code, message, str(where))
            raise TunerError(f"drawing {where} failed ({message}); rerun `tuner show`")

    return done


def _write_pick(
    run: RunData, pick: Pick, out_dir: Path, backend_info: dict[str, Any] | None, options: ExportOptions
) -> None:
    spec = run.spec
    study_info = {
        "name": run.study.study_name,
        "storage": spec.storage_url(),
        "sampler": spec.study.sampler,
        "seed": spec.study.seed,
        "objective": spec.study.objective,
        "trials": len(run.study.trials) if run.trials is None else run.trials,
    }
    doc = pick_document(
        pick, spec=spec.to_dict(), backend=backend_info or {"name": spec.backend.name}, study=study_info
    )
    write_pick_yaml(out_dir / "pick.yaml", doc)
    _export(pick, spec, out_dir / "deploy", options)


def _export(pick: Pick, spec: StudySpec, out: Path, options: ExportOptions) -> None:
    from .export import write_exports

    deployment, problem = pick.chosen.deployment, build_problem(spec)
    context = export_context(spec, deployment, problem, options)
    write_exports(deployment, problem, out, context=context, replace_all=True)


#: The plan's files in a run directory: the table and the planned replicas' artifacts.
PLAN_CSV, PLAN_DEPLOY = "plan.csv", "deploy-plan"


def write_plan(
    run: RunData,
    plans: Sequence[ReplicaPlan],
    out_dir: Path,
    *,
    export: bool,
    options: ExportOptions | None = None,
) -> Path | None:
    """Write plan.csv and, with ``export``, the pick's planned replicas as deployment
    artifacts in deploy-plan/ (replaced whole; removed without ``export``, so no export of
    another rate is left beside the plan). Returns deploy-plan/ when written."""
    write_plan_csv(out_dir / PLAN_CSV, plans)
    target = out_dir / PLAN_DEPLOY
    scaled = plans[0].deployment
    if not export:
        shutil.rmtree(target, ignore_errors=True)
        return None
    if scaled is None:
        raise ConfigError(
            "plan.export", True, f"the pick's plan needs {plans[0].gpus:,} GPUs: too many to lay out"
        )
    from .export import write_exports

    problem = build_problem(run.spec)
    context = export_context(run.spec, scaled, problem, options)
    write_exports(scaled, problem, target, context=context, replace_all=True)
    return target


def remove_plan(out_dir: Path) -> None:
    """Remove a plan written for an earlier pick."""
    (out_dir / PLAN_CSV).unlink(missing_ok=True)
    shutil.rmtree(out_dir / PLAN_DEPLOY, ignore_errors=True)


@dataclass(frozen=True)
class ExportOptions:
    """What the user may set on an export from the command line (``--image``,
    ``--router-image``, ``--node-hosts``); None keeps the exporters' defaults."""

    image: str | None = None
    router_image: str | None = None
    node_hosts: tuple[str, ...] | None = None


def export_context(
    spec: StudySpec, deployment: Deployment, problem: Problem, options: ExportOptions | None = None
) -> ExportContext:
    """The export context of a run: the measuring backend's own launch plan when it has one
    (a live run's export starts the command that was measured), and the user's options."""
    from .export import ExportContext

    opts = options or ExportOptions()
    backend = backends.create(spec.backend.name, dict(spec.backend.options))
    extra: dict[str, Any] = {}
    if opts.image:
        extra["image"] = opts.image
    if opts.router_image:
        extra["router_image"] = opts.router_image
    return ExportContext(
        deployment=deployment,
        problem=problem,
        node_hosts=opts.node_hosts,
        planner=backend.export_plan if isinstance(backend, ExportsPlan) else None,
        **extra,
    )
