"""Terminal rendering with rich: the trial progress bar, the front and pick tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from serving import LoadPoint

from . import confidence as robust
from .front import pareto_front
from .pick import Pick
from .results import MeasuredPoint
from .study import StudySummary, TrialOutcome

__all__ = [
    "TrialProgress",
    "front_table",
    "load_cell",
    "near_table",
    "pick_table",
    "point_dict",
    "summary_line",
]


class TrialProgress:
    """A progress bar over trials whose description shows the best SLA pick so far."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._task: Any = None

    def __enter__(self) -> TrialProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the bar (and its refresh thread); safe to call twice."""
        self._progress.stop()

    def start(self, done: int, total: int) -> None:
        self._task = self._progress.add_task("", total=total, completed=min(done, total))

    def update(self, outcome: TrialOutcome, summary: StudySummary) -> None:
        best = summary.best
        text = "no SLA-feasible point yet"
        if best is not None:
            p = best.point
            text = f"best {best.label} {p.tok_s_gpu:,.0f} tok/s/GPU @ {p.tok_s_user:.1f} tok/s/user"
        self._progress.update(self._task, advance=1, description=text)


def summary_line(summary: StudySummary) -> str:
    infeasible = sum(summary.infeasible.values())
    reasons = ", ".join(f"{k} {v}" for k, v in summary.infeasible.most_common())
    parts = [
        f"{summary.trials} trials this run: {summary.measured} measured"
        + (f" ({summary.explored} exploring other families)" if summary.explored else ""),
        f"{summary.duplicates} duplicates answered from storage",
        f"{infeasible} infeasible never measured" + (f" ({reasons})" if reasons else ""),
        f"{len(summary.failed)} failed",
    ]
    text = "; ".join(parts)
    return text + ("; search space exhausted" if summary.exhausted else "")


def _row(m: MeasuredPoint) -> list[str]:
    p = m.point
    return [
        m.label,
        str(m.gpus),
        load_cell(p),
        f"{p.tok_s_user:.1f}",
        f"{p.tok_s_gpu:,.0f}",
        f"{p.ttft_ms_p50:,.0f}",
        f"{p.ttft_ms_p90:,.0f}",
        f"{p.tpot_ms_p50:.1f}",
        str(m.trial),
    ]


def load_cell(point: LoadPoint) -> str:
    """The load a point was measured at: the arrival rate (open loop) or the concurrency."""
    if point.open_loop:
        return f"{point.request_rate_rps:.1f} req/s"
    return str(point.concurrency)


# Short headers so the table fits an 80-column terminal; the CSVs carry every metric.
_COLUMNS = (
    "topology",
    "GPUs",
    "conc",
    "tok/s\nuser",
    "tok/s\nGPU",
    "TTFT\np50",
    "TTFT\np90",
    "TPOT\np50",
    "trial",
)


def _table(title: str, rows: Sequence[MeasuredPoint], caption: str = "times in ms") -> Table:
    """Numbers are never cut (a CI log is often 80 columns): each number column is as wide
    as its widest cell; the topology label folds onto a second line instead."""
    cells = [_row(m) for m in rows]
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    columns = list(_COLUMNS)
    if any(m.point.open_loop for m in rows):
        columns[2] = "load"  # cells hold "8.0 req/s" (open loop) or a concurrency
    for i, col in enumerate(columns):
        if i == 0:
            table.add_column(col, justify="left", overflow="fold", min_width=8)
        else:
            widest = max([len(r[i]) for r in cells] + [max(len(p) for p in col.split("\n"))])
            table.add_column(col, justify="right", no_wrap=True, min_width=widest)
    for row in cells:
        table.add_row(*row)
    return table


def front_table(points: Sequence[MeasuredPoint], limit: int = 20) -> Table:
    """The Pareto front, most interactive last (as on the chart's x axis)."""
    front = pareto_front(points)
    shown = (
        front
        if len(front) <= limit
        else [front[round(i * (len(front) - 1) / (limit - 1))] for i in range(limit)]
    )
    extra = "" if len(front) <= limit else f" ({limit} of {len(front)} shown)"
    return _table(f"Pareto front: {len(front)} points of {len(points)}{extra}", shown)


def pick_table(pick: Pick) -> Table:
    margin = f" at confidence {pick.confidence:g}" if pick.confidence > 0.5 else ""
    return _table(
        f"SLA pick ({pick.sla.describe()}; {pick.eligible} of {pick.total} points meet it{margin})",
        [pick.chosen],
        caption="times in ms; " + estimate_line(pick),
    )


def estimate_line(pick: Pick) -> str:
    """``measured``, or ``estimated ±X%`` with the 80% intervals and the margin's cost."""
    p = pick.chosen.point
    text = robust.label(p)
    if robust.is_estimated(p):
        text += (
            f" (80%: tok/s/GPU {p.tok_s_gpu_low:,.0f}-{p.tok_s_gpu_high:,.0f}, "
            f"TPOT {p.tpot_ms_low:.1f}-{p.tpot_ms_high:.1f}, TTFT {p.ttft_ms_low:,.0f}-{p.ttft_ms_high:,.0f})"
        )
    if pick.plain is not None:
        text += (
            f"; the margin costs {pick.margin_tok_s_gpu:,.0f} tok/s/GPU vs the plain pick {pick.plain.label}"
        )
    return text


def near_table(points: Sequence[MeasuredPoint]) -> Table:
    return _table("closest points to the SLA", points)


def point_dict(m: MeasuredPoint) -> dict[str, Any]:
    """JSON form of a point for ``--json`` output."""
    return {
        "trial": m.trial,
        "label": m.label,
        "gpus": m.gpus,
        "deployment": m.deployment.to_dict(),
        **m.point.to_dict(),
        "estimate": robust.label(m.point),
    }
