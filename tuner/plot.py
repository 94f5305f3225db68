"""``pareto.png``: throughput per GPU against interactivity, one curve per topology.

The industry chart's conventions (SemiAnalysis InferenceX, NVIDIA Dynamo talks): x is
tok/s/user, y is tok/s/GPU; each topology is a curve traced by concurrency and labelled
like ``1xDEP4+1xDEP8``; the SLA is a vertical line and the pick a star.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .front import pareto_front
from .pick import Pick
from .results import MeasuredPoint
from .sla import SLA

__all__ = ["plot_front"]

#: Topologies drawn in colour with a legend entry; the rest are drawn faintly.
MAX_LABELLED = 12


def _curves(points: Sequence[MeasuredPoint]) -> dict[str, list[MeasuredPoint]]:
    """Per topology label, its own Pareto front (the best knobs at each interactivity)."""
    by_label: dict[str, list[MeasuredPoint]] = defaultdict(list)
    for m in points:
        by_label[m.label].append(m)
    return {label: pareto_front(ms) for label, ms in by_label.items()}


def plot_front(
    path: Path, points: Sequence[MeasuredPoint], *, sla: SLA, pick: Pick | None, title: str
) -> None:
    """Write the chart to ``path`` (PNG). Needs matplotlib (a core dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(points)
    ranked = sorted(curves, key=lambda lab: -max(m.point.tok_s_gpu for m in curves[lab]))
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    cmap = plt.get_cmap("tab20")
    for i, label in enumerate(ranked):
        ms = curves[label]
        xs = [m.point.tok_s_user for m in ms]
        ys = [m.point.tok_s_gpu for m in ms]
        if i < MAX_LABELLED:
            ax.plot(xs, ys, "o-", ms=4, lw=1.4, color=cmap(i % 20), label=label)
        else:
            ax.plot(xs, ys, "-", lw=0.7, color="0.8", zorder=0)
    front = pareto_front(points)
    if front:
        ax.plot(
            [m.point.tok_s_user for m in front],
            [m.point.tok_s_gpu for m in front],
            "--",
            color="black",
            lw=1.0,
            label="Pareto front",
        )
    if sla.min_tok_s_user:
        ax.axvline(sla.min_tok_s_user, color="crimson", lw=1.2, ls=":")
        ax.text(
            sla.min_tok_s_user,
            0.98,
            f" SLA {sla.min_tok_s_user:g} tok/s/user",
            transform=ax.get_xaxis_transform(),
            color="crimson",
            va="top",
            fontsize=8,
        )
    if pick is not None:
        c = pick.chosen
        ax.plot(
            [c.point.tok_s_user],
            [c.point.tok_s_gpu],
            "*",
            ms=18,
            color="gold",
            mec="black",
            zorder=5,
            label=f"pick: {c.label} @ conc {c.point.concurrency}",
        )
    ax.set_xlabel("Interactivity (tok/s/user = 1000 / median TPOT)")
    ax.set_ylabel("Token throughput per GPU (input + output tok/s / all GPUs)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    if ranked:
        ax.legend(fontsize=7, loc="upper right", ncol=2 if len(ranked) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
