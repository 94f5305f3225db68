"""``tuner status``: progress, Pareto front and failures of a (shared) study, while it runs."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from ..console import front_table, point_dict
from ..front import pareto_front
from ..search import TrialRecord
from ..studies import BUDGET_ATTR
from ._common import add_run_args, int_in, load_from_args, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("status", help="progress, front and failures of a study (also while workers run)")
    add_run_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--top", type=int_in(1), default=10, help="front rows to show (default 10)")
    p.set_defaults(func=run)


def _trial_dict(t: FrozenTrial) -> dict[str, Any]:
    r = TrialRecord.of(t)
    return {
        "number": r.number,
        "state": r.state.name,
        "label": r.label,
        "points": r.n_points,
        "worker": r.worker,
        "reason": r.reason or None,
        "retry_of": r.retry_of,
    }


def run(args: argparse.Namespace) -> int:
    data = load_from_args(args)
    trials = data.study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    budget = int(data.study.user_attrs.get(BUDGET_ATTR, data.spec.study.trials))
    finished = sum(t.state.is_finished() for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if args.json:
        doc = {
            "study": data.study.study_name,
            "budget": budget,
            "finished": finished,
            "states": dict(states),
            "running": [_trial_dict(t) for t in running],
            "failed": [_trial_dict(t) for t in failed],
            "front": [point_dict(m) for m in pareto_front(data.points)],
        }
        print(json.dumps(doc, indent=2))
        return 0
    progress = Table(
        title=f"study {data.study.study_name}: {finished}/{budget} trials finished", title_justify="left"
    )
    for col in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"):
        progress.add_column(col.lower(), justify="right")
    progress.add_row(
        *(str(states.get(col, 0)) for col in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"))
    )
    out.print(progress)
    if running:
        out.print(_trials_table("running", running))
    if failed:
        out.print(_trials_table("failures", failed))
    out.print(front_table(data.points, limit=args.top))
    return 0


def _trials_table(title: str, trials: list[FrozenTrial]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("trial", "topology", "points", "worker", "reason"):
        table.add_column(col)
    for t in trials:
        d = _trial_dict(t)
        table.add_row(
            str(d["number"]),
            str(d["label"] or ""),
            str(d["points"]),
            str(d["worker"] or ""),
            str(d["reason"] or "") + (f" (retry of {d['retry_of']})" if d["retry_of"] is not None else ""),
        )
    return table
