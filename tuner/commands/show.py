"""``tuner show RUN``: the Pareto front and the SLA pick of a run, for people or machines."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..console import front_table, pick_table, point_dict
from ..errors import NoFeasiblePick
from ..front import pareto_front
from ..pick import Pick, pick_best
from ._common import add_run_args, int_in, load_from_args, out

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("show", help="print the Pareto front and the SLA pick of a run")
    add_run_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--top", type=int_in(1), default=20, help="front rows to show (default 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = load_from_args(args)
    try:
        pick: Pick | None = pick_best(data.points, data.spec.sla)
    except NoFeasiblePick:
        pick = None
    if args.json:
        doc = {
            "study": data.study.study_name,
            "points": len(data.points),
            "sla": dataclasses.asdict(data.spec.sla),
            "front": [point_dict(m) for m in pareto_front(data.points)],
            "pick": point_dict(pick.chosen) if pick else None,
        }
        print(json.dumps(doc, indent=2))
        return 0
    out.print(front_table(data.points, limit=args.top))
    out.print(pick_table(pick) if pick else f"no point meets the SLA ({data.spec.sla.describe()})")
    return 0
