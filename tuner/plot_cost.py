"""``cost.png``: $ per million tokens (in and out) against interactivity, beside ``pareto.png``.

The same topologies in the same colours and markers as the main chart (tok/s/GPU against
tok/s/user, :mod:`tuner.plot`), so the two read side by side; y is $/Mtok on the main
chart's token basis, prompt and generated tokens (:mod:`tuner.cost`), on a log scale, since
the most interactive points cost tens of times the saturated ones. The dashed line is the
cost front (least $/Mtok at each tok/s/user), the dotted line the SLA's interactivity floor,
the star the pick.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .cost import cost_front, usd_per_mtok
from .pick import Pick
from .plot import front_styles
from .results import MeasuredPoint
from .sla import SLA

__all__ = ["plot_cost"]


def _xy(ms: Sequence[MeasuredPoint], price: float) -> tuple[list[float], list[float]]:
    pairs = [(m.point.tok_s_user, usd_per_mtok(m.point, price)) for m in ms]
    kept = [(x, y) for x, y in pairs if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def plot_cost(
    path: Path,
    points: Sequence[MeasuredPoint],
    *,
    sla: SLA,
    pick: Pick | None,
    title: str,
    usd_per_gpu_hour: float,
) -> None:
    """Write the cost chart to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = matplotlib.colormaps["tab10"]
    styles = front_styles(points)
    by_label: dict[str, list[MeasuredPoint]] = defaultdict(list)
    for m in points:
        by_label[m.label].append(m)
    fig, ax = plt.subplots(figsize=(12.5, 6.5), dpi=110)
    for label, ms in sorted(by_label.items()):
        xs, ys = _xy(cost_front(ms), usd_per_gpu_hour)
        if label not in styles:
            ax.plot(xs, ys, "-", lw=0.6, color="0.82", zorder=0)
            continue
        colour_i, marker = styles[label]
        ax.plot(xs, ys, "-", marker=marker, ms=5, lw=1.3, color=cmap(colour_i), zorder=2, label=label)
    xs, ys = _xy(cost_front(points), usd_per_gpu_hour)
    ax.plot(xs, ys, "--", color="black", lw=1.0, zorder=4, label="cost front")
    if sla.min_tok_s_user:
        ax.axvline(sla.min_tok_s_user, color="crimson", lw=1.2, ls=":", label=f"SLA: {sla.describe()}")
    if pick is not None:
        c = pick.chosen
        cost = usd_per_mtok(c.point, usd_per_gpu_hour)
        if cost is not None:
            ax.plot(
                [c.point.tok_s_user],
                [cost],
                "*",
                ms=18,
                color="gold",
                mec="black",
                zorder=5,
                label=f"pick: {c.label} @ conc {c.point.concurrency}: \\${cost:,.3g}/Mtok",
            )
    ax.set_xlabel("Interactivity (tok/s/user = 1000 / median TPOT)")
    # A bare dollar sign starts matplotlib's mathtext: each is escaped with a backslash.
    ax.set_ylabel(f"\\$ per million tokens, in + out (at \\${usd_per_gpu_hour:g} per GPU-hour)")
    if ys:  # a log axis without data warns
        ax.set_yscale("log")
    ax.set_xlim(left=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
