"""A run's capacity plan: the rows of ``plan.csv`` and the table ``tuner plan`` prints.

The plan sizes the pick and every deployment of the run's front (the front of the study's
objective, as in ``front.csv``) for one request rate; :mod:`tuner.capacity` holds the math,
this module the run's choices (which front, which price) and the file's columns.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from .capacity import MAX_PLAN_GPUS, ReplicaPlan, plan_capacity
from .cost import spec_price
from .objectives import get_objective
from .results import MeasuredPoint
from .sla import SLA
from .spec import PlanSpec, StudySpec

__all__ = ["PLAN_COLUMNS", "plan_rows", "plan_table", "plans_for", "run_price", "write_plan_csv"]


def run_price(spec: StudySpec) -> float | None:
    """$ per GPU-hour of the run's GPU: the spec's, else the catalog default, else None."""
    return spec_price(spec.hardware.gpu, spec.hardware.usd_per_gpu_hour)


def plans_for(
    points: Sequence[MeasuredPoint],
    spec: StudySpec,
    sla: SLA,
    plan: PlanSpec,
    *,
    usd_per_gpu_hour: float | None,
) -> list[ReplicaPlan]:
    """The pick and the front's deployments of a run, sized for ``plan.rate_rps``."""
    return plan_capacity(
        points,
        get_objective(spec.study.objective).front(points),
        sla,
        rate_rps=plan.rate_rps,
        headroom=plan.headroom,
        gpus_per_node=spec.hardware.gpus_per_node,
        usd_per_gpu_hour=usd_per_gpu_hour,
    )


PLAN_COLUMNS = (
    "role",
    "trial",
    "mode",
    "topology",
    "gpus_per_replica",
    "concurrency",
    "tok_s_user",
    "ttft_ms_p50",
    "requests_s_per_replica",
    "rate_rps",
    "headroom",
    "replicas",
    "agg_workers",
    "prefill_workers",
    "decode_workers",
    "gpus",
    "nodes",
    "capacity_rps",
    "spare",
    "usd_per_gpu_hour",
    "usd_per_hour",
    "usd_per_mtok",
    "usd_per_mtok_at_rate",
    "usd_per_mtok_output",
    "usd_per_mtok_output_at_rate",
)


def _r(value: float | None, digits: int = 4) -> Any:
    return "" if value is None else round(value, digits)


def plan_rows(plans: Sequence[ReplicaPlan]) -> list[dict[str, Any]]:
    rows = []
    for p in plans:
        workers = p.workers()
        rows.append(
            {
                "role": p.role,
                "trial": p.trial,
                "mode": p.replica.mode,
                "topology": p.replica.label(),
                "gpus_per_replica": p.replica.gpus(),
                "concurrency": p.point.concurrency,
                "tok_s_user": _r(p.point.tok_s_user),
                "ttft_ms_p50": _r(p.point.ttft_ms_p50),
                "requests_s_per_replica": _r(p.point.requests_s),
                "rate_rps": p.rate_rps,
                "headroom": p.headroom,
                "replicas": p.replicas,
                "agg_workers": workers.get("agg", ""),
                "prefill_workers": workers.get("prefill", ""),
                "decode_workers": workers.get("decode", ""),
                "gpus": p.gpus,
                "nodes": "" if p.nodes is None else p.nodes,
                "capacity_rps": _r(p.capacity_rps),
                "spare": _r(p.spare),
                "usd_per_gpu_hour": _r(p.usd_per_gpu_hour),
                "usd_per_hour": _r(p.usd_per_hour, 2),
                "usd_per_mtok": _r(p.usd_per_mtok),
                "usd_per_mtok_at_rate": _r(p.usd_per_mtok_at_rate),
                "usd_per_mtok_output": _r(p.usd_per_mtok_output),
                "usd_per_mtok_output_at_rate": _r(p.usd_per_mtok_output_at_rate),
            }
        )
    return rows


def write_plan_csv(path: Path, plans: Sequence[ReplicaPlan]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=PLAN_COLUMNS)
        writer.writeheader()
        writer.writerows(plan_rows(plans))


def _money(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def plan_table(plans: Sequence[ReplicaPlan]) -> Table:
    """The plan for people: one row per topology, the pick first (in bold)."""
    first = plans[0]
    price = "no price" if first.usd_per_gpu_hour is None else f"${first.usd_per_gpu_hour:g}/GPU-hour"
    table = Table(
        title=f"Capacity plan: {first.rate_rps:g} requests/s, headroom {first.headroom:.0%}, {price}",
        title_justify="left",
        caption="first row: the pick; $/Mtok: $ per million tokens in and out with every GPU "
        "busy; at rate: the whole fleet serving exactly the rate; output: $ per million output "
        "tokens (the convention of API price lists)",
        caption_justify="left",
    )
    columns = (
        "topology",
        "req/s\n/rep",
        "reps",
        "workers",
        "GPUs",
        "nodes",
        "$/h",
        "$/Mtok",
        "$/Mtok\nat rate",
        "$/Mtok\noutput",
    )
    rows = []
    for p in plans:
        rows.append(
            [
                p.replica.label(),
                f"{p.point.requests_s:,.2f}",
                f"{p.replicas:,}",
                "+".join(str(n) for n in p.workers().values()),
                f"{p.gpus:,}" if p.gpus <= MAX_PLAN_GPUS else f">{MAX_PLAN_GPUS:,}",
                "-" if p.nodes is None else f"{p.nodes:,}",
                _money(p.usd_per_hour, ",.0f"),
                _money(p.usd_per_mtok, ",.3f"),
                _money(p.usd_per_mtok_at_rate, ",.3f"),
                _money(p.usd_per_mtok_output, ",.3f"),
            ]
        )
    for i, col in enumerate(columns):
        if i == 0:
            table.add_column(col, justify="left", overflow="fold", min_width=8)
        else:  # numbers are never cut: each column as wide as its widest cell
            widest = max([len(r[i]) for r in rows] + [max(len(h) for h in col.split("\n"))])
            table.add_column(col, justify="right", no_wrap=True, min_width=widest)
    for p, row in zip(plans, rows, strict=True):
        table.add_row(*row, style="bold" if p.role == "pick" else None)
    return table
