"""The seed chart side by side: DeepSeek-R1 disaggregated on GB200 and B200, simulator vs measured.

For every measured disaggregated topology (InferenceX rows of ``calibration.csv``, e.g.
``1xDEP4+1xDEP8``) the simulator's curve is traced by pricing a copy of its row over a dense
concurrency ladder with :class:`tuner.validate.Predictor`, and drawn over the measured points:
tok/s/GPU (all GPUs, prefill + decode) against tok/s/user, the axes of the product's Pareto
chart. One PNG per GPU, one panel per (ISL/OSL, precision). The text is computed from the
predicted/measured ratios at the measured concurrencies, so it follows the simulator.

    python benchmarks/fidelity/seed_chart.py [--csv ../shared/fidelity/calibration.csv] [--out DIR]

writes ``seed_gb200.png`` and ``seed_b200.png`` (default ``docs/fidelity/``) and prints the
markdown section that ``report.py`` puts into ``docs/fidelity.md``.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from tuner.validate import Prediction, Predictor, positive_float, read_points  # noqa: E402

__all__ = ["GPUS", "MODEL", "TITLE", "Curve", "collect", "main", "seed_chart_section"]

MODEL = "deepseek-ai/DeepSeek-R1"
#: GPUs drawn, one PNG each, in this order.
GPUS = ("gb200", "b200")
TITLE = "Seed chart: DeepSeek-R1 disagg on GB200 and B200"
DEFAULT_CSV = ROOT.parent / "shared" / "fidelity" / "calibration.csv"
FIGURES = ROOT / "docs" / "fidelity"
#: Ratios within this factor of 1 count as agreeing (the report's "within ±20%").
BAND = 1.2
#: Ladder of a curve: log-spaced from 1 to twice the measured maximum, at least up to this.
MIN_LADDER_TOP = 64
LADDER_STEPS = 40
_WORKER = re.compile(r"^(\d+)x([A-Z]+)(\d+)$")


def _worker_kind(part: str) -> str:
    """``3xTEP8`` -> ``TEP``; the label itself when it is not of that form."""
    m = _WORKER.match(part)
    return m.group(2) if m else part


@dataclass(frozen=True)
class Point:
    """One measured row and the simulator's prediction at its concurrency."""

    row: Mapping[str, str]
    pred: Prediction

    @property
    def concurrency(self) -> int:
        return int(float(self.row["concurrency"]))

    def measured(self, metric: str) -> float:
        value = positive_float(self.row.get(metric))
        if metric == "tok_s_user" and math.isnan(value):
            tpot = positive_float(self.row.get("tpot_ms"))
            value = 1000.0 / tpot if tpot > 0 else math.nan
        return value

    def predicted(self, metric: str) -> float:
        value = self.pred.values.get(f"pred_{metric}", math.nan) if self.pred.status == "ok" else math.nan
        return value if math.isfinite(value) and value > 0 else math.nan

    def ratio(self, metric: str) -> float:
        return self.predicted(metric) / self.measured(metric)


@dataclass
class Curve:
    """One measured disaggregated configuration: its points and the simulator's ladder."""

    gpu: str
    panel: tuple[int, int, str]  # (isl, osl, precision)
    topology: str
    engine: str
    points: list[Point] = field(default_factory=list)
    ladder: list[tuple[int, float, float]] = field(default_factory=list)  # (c, tok/s/user, tok/s/GPU)

    @property
    def label(self) -> str:
        return f"{self.topology} ({self.engine})"

    @property
    def decode_kind(self) -> str:
        parts = self.topology.split("+")
        return _worker_kind(parts[-1]) if len(parts) == 2 else "?"

    @property
    def prefill_decode_gpus(self) -> tuple[int, int]:
        row = self.points[0].row
        p = int(positive_float(row["p_workers"]) * positive_float(row["p_tp"]) * positive_float(row["p_dp"]))
        d = int(positive_float(row["d_workers"]) * positive_float(row["d_tp"]) * positive_float(row["d_dp"]))
        return p, d

    def scored(self) -> list[Point]:
        return [p for p in self.points if all(p.ratio(m) > 0 for m in ("tok_s_gpu", "tok_s_user"))]


def _panel_title(panel: tuple[int, int, str]) -> str:
    isl, osl, precision = panel
    return f"ISL/OSL {isl}/{osl}, {precision.upper()}"


def _selected(row: Mapping[str, str], mode: str) -> bool:
    return (
        row.get("source") == "inferencex"
        and row.get("model") == MODEL
        and row.get("hardware") in GPUS
        and row.get("mode") == mode
        and row.get("kind") == "load_point"
        and (row.get("spec_decode") or "none") == "none"
        and positive_float(row.get("concurrency")) > 0
    )


def _panel(row: Mapping[str, str]) -> tuple[int, int, str]:
    return int(float(row["isl"])), int(float(row["osl"])), row["precision"]


def _ladder(top: int) -> list[int]:
    hi = max(2 * top, MIN_LADDER_TOP)
    steps = [round(math.exp(math.log(hi) * i / (LADDER_STEPS - 1))) for i in range(LADDER_STEPS)]
    return sorted(set(steps) | {1, hi})


def collect(rows: Iterable[Mapping[str, str]], predictor: Predictor) -> list[Curve]:
    """The measured disagg DeepSeek-R1 curves (spec_decode none) with their simulator ladders."""
    curves: dict[tuple[str, tuple[int, int, str], str, str], Curve] = {}
    for row in rows:
        if not _selected(row, "disagg"):
            continue
        key = (row["hardware"], _panel(row), row["topology"], row.get("backend") or "vllm")
        curve = curves.setdefault(key, Curve(*key))
        curve.points.append(Point(row, predictor.predict(row)))
    for curve in curves.values():
        curve.points.sort(key=lambda p: p.concurrency)
        template = curve.points[0].row
        for c in _ladder(curve.points[-1].concurrency):
            row = {**template, "concurrency": str(c)}
            p = Point(row, predictor.predict(row))
            user, gpu = p.predicted("tok_s_user"), p.predicted("tok_s_gpu")
            if user > 0 and gpu > 0:
                curve.ladder.append((c, user, gpu))
    order = {g: i for i, g in enumerate(GPUS)}
    return sorted(
        curves.values(), key=lambda c: (order[c.gpu], c.panel[2], c.panel[0], c.panel[1], c.topology)
    )


# -- chart ------------------------------------------------------------------------------------
def _marked_y(
    panel: tuple[int, int, str], curves: Sequence[Curve], agg: Sequence[tuple[float, float]]
) -> list[float]:
    """tok/s/GPU of every marker of a panel: measured, predicted at the measured concurrency, agg."""
    ys = [y for _, y in agg]
    for curve in curves:
        if curve.panel == panel:
            for p in curve.points:
                ys += [v for v in (p.measured("tok_s_gpu"), p.predicted("tok_s_gpu")) if v > 0]
    return ys


def _plot_gpu(path: Path, gpu: str, curves: Sequence[Curve], agg: Sequence[Mapping[str, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panels = sorted({c.panel for c in curves}, key=lambda p: (p[2], p[0], p[1]))
    ncols = 2 if len(panels) == 4 else min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.6 * nrows), dpi=110, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, panel in zip(axes.flat, panels, strict=False):
        xs_agg = [
            (positive_float(r.get("tok_s_user")), positive_float(r.get("tok_s_gpu")))
            for r in agg
            if _panel(r) == panel
        ]
        xs_agg = [(x, y) for x, y in xs_agg if x > 0 and y > 0]
        if xs_agg:
            ax.scatter(
                [x for x, _ in xs_agg],
                [y for _, y in xs_agg],
                marker="s",
                s=14,
                color="0.75",
                zorder=1,
                label=f"agg, measured ({len(xs_agg)})",
            )
        for i, curve in enumerate(c for c in curves if c.panel == panel):
            color = cmap(i % 10)
            if curve.ladder:
                ax.plot(
                    [u for _, u, _ in curve.ladder],
                    [g for _, _, g in curve.ladder],
                    "-",
                    lw=1.4,
                    color=color,
                    zorder=2,
                )
            for p in curve.points:
                mx, my = p.measured("tok_s_user"), p.measured("tok_s_gpu")
                px, py = p.predicted("tok_s_user"), p.predicted("tok_s_gpu")
                if px > 0 and py > 0 and mx > 0 and my > 0:
                    ax.plot([mx, px], [my, py], ":", lw=0.9, color=color, zorder=2)
                    ax.plot([px], [py], "o", ms=6, mfc="white", mec=color, zorder=3)
            ax.plot(
                [p.measured("tok_s_user") for p in curve.points],
                [p.measured("tok_s_gpu") for p in curve.points],
                "o",
                ms=7,
                color=color,
                mec="black",
                mew=0.5,
                zorder=4,
                label=curve.label,
            )
        ax.set_yscale("log")
        ax.set_xlim(left=0)
        if ys := _marked_y(panel, curves, xs_agg):  # clip the curves' low-concurrency tails
            ax.set_ylim(bottom=min(min(ys) / 2, max(ys) / 20))
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(_panel_title(panel), fontsize=10)
        ax.set_xlabel("tok/s/user (1000 / median TPOT)", fontsize=8)
        ax.set_ylabel("tok/s/GPU (input + output, all GPUs; log)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=6.5, loc="lower left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"DeepSeek-R1 disaggregated on {gpu.upper()}, InferenceX measurements\n"
        "line: simulator over concurrency; filled: measured; hollow: simulator at the measured concurrency",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- text -------------------------------------------------------------------------------------
def _median(values: Iterable[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return statistics.median(vals) if vals else math.nan


def _x(ratio: float) -> str:
    return f"x{ratio:.2f}" if math.isfinite(ratio) else "-"


def _off(ratio: float) -> bool:
    return not (1 / BAND <= ratio <= BAND)


def _where(curve: Curve) -> str:
    bad = [p for p in curve.points if p.pred.status != "ok"]
    if bad:
        return "; ".join(f"c={p.concurrency}: {p.pred.status}" for p in bad)
    notes = []
    for p in curve.scored():
        misses = [
            f"{name} {_x(p.ratio(metric))} ({'over' if p.ratio(metric) > 1 else 'under'})"
            for name, metric in (("tok/s/GPU", "tok_s_gpu"), ("tok/s/user", "tok_s_user"))
            if _off(p.ratio(metric))
        ]
        if _off(p.ratio("tok_s_gpu")) and p.ratio("ttft_ms") > 0:
            misses.append(f"TTFT {_x(p.ratio('ttft_ms'))}")
        if misses:
            notes.append(f"c={p.concurrency}: " + ", ".join(misses))
    if not curve.scored():
        return "no measured tok/s/GPU and tok/s/user to compare"
    return "; ".join(notes) if notes else f"within ±{round((BAND - 1) * 100)}% at every point"


def _table(curves: Sequence[Curve]) -> list[str]:
    lines = [
        "| GPU | panel | topology (engine) | points (concurrency) | median pred/meas tok/s/GPU "
        f"| median pred/meas tok/s/user | where it diverges (beyond ±{round((BAND - 1) * 100)}%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in curves:
        conc = ", ".join(str(p.concurrency) for p in c.points)
        scored = c.scored()
        gpu_r = _median(p.ratio("tok_s_gpu") for p in scored)
        user_r = _median(p.ratio("tok_s_user") for p in scored)
        lines.append(
            f"| {c.gpu.upper()} | {_panel_title(c.panel)} | {c.label} | {len(c.points)} ({conc}) "
            f"| {_x(gpu_r)} | {_x(user_r)} | {_where(c)} |"
        )
    return lines


def _group(points: Sequence[Point]) -> str:
    if not points:
        return "no points"
    gpu = _median(p.ratio("tok_s_gpu") for p in points)
    user = _median(p.ratio("tok_s_user") for p in points)
    return f"tok/s/GPU {_x(gpu)}, tok/s/user {_x(user)} ({len(points)} points)"


def _gpu_error(points: Sequence[Point]) -> float:
    """Median absolute % error of tok/s/GPU (the chart's y) over a group."""
    return 100.0 * _median(abs(p.ratio("tok_s_gpu") - 1.0) for p in points)


def _which_more(groups: Mapping[str, Sequence[Point]]) -> str:
    errors = {name: _gpu_error(pts) for name, pts in groups.items() if pts}
    if len(errors) < 2:
        return ""
    worst = max(errors, key=lambda n: errors[n])
    rest = ", ".join(f"{errors[n]:.0f}% {n}" for n in errors if n != worst)
    return f"; tok/s/GPU is furthest off for {worst} (median |error| {errors[worst]:.0f}%, vs {rest})"


def _findings(curves: Sequence[Curve]) -> list[str]:
    pts = [(c, p) for c in curves for p in c.scored()]
    if not pts:
        return ["- No measured point could be priced."]
    allp = [p for _, p in pts]
    per_gpu = ", ".join(
        f"{g.upper()} {_group([p for c, p in pts if c.gpu == g])}"
        for g in GPUS
        if any(c.gpu == g for c, _ in pts)
    )
    inside = sum(not _off(p.ratio("tok_s_gpu")) and not _off(p.ratio("tok_s_user")) for p in allp)
    out = [
        f"- Overall, over {len(allp)} measured points of {len({(c.gpu, c.panel, c.label) for c, _ in pts})} "
        f"curves, the median predicted/measured ratio is {_group(allp)}; {inside} of {len(allp)} points "
        f"are within ±{round((BAND - 1) * 100)}% on both. Per GPU: {per_gpu}."
    ]
    cut = statistics.median(p.concurrency for p in allp)
    low = [p for p in allp if p.concurrency <= cut]
    high = [p for p in allp if p.concurrency > cut]
    out.append(
        f"- By concurrency (split at the median measured concurrency, {cut:g}): low (c ≤ {cut:g}) "
        f"{_group(low)}; high (c > {cut:g}) {_group(high)}"
        f"{_which_more({'low-concurrency': low, 'high-concurrency': high})}."
    )
    kinds = sorted({c.decode_kind for c, _ in pts})
    by_kind = {f"{k} decode": [p for c, p in pts if c.decode_kind == k] for k in kinds}
    heavy = [p for c, p in pts if c.prefill_decode_gpus[0] >= c.prefill_decode_gpus[1]]
    light = [p for c, p in pts if c.prefill_decode_gpus[0] < c.prefill_decode_gpus[1]]
    out.append(
        "- By topology family: "
        + "; ".join(f"{name} {_group(p)}" for name, p in by_kind.items())
        + _which_more(by_kind)
        + f". By prefill:decode GPUs: prefill ≥ decode {_group(heavy)}; prefill < decode "
        f"{_group(light)}{_which_more({'prefill ≥ decode': heavy, 'prefill < decode': light})}."
    )
    ttft = [p for p in allp if _off(p.ratio("tok_s_gpu")) and not _off(p.ratio("tok_s_user"))]
    if ttft:
        out.append(
            f"- {len(ttft)} points miss tok/s/GPU by more than ±{round((BAND - 1) * 100)}% while their "
            f"tok/s/user is within it; there the median predicted/measured TTFT is "
            f"{_x(_median(p.ratio('ttft_ms') for p in ttft))} (closed loop: tok/s/GPU follows "
            "concurrency / (TTFT + (OSL - 1) x TPOT), so a TTFT miss moves tok/s/GPU alone)."
        )
    worst = sorted(
        pts,
        key=lambda cp: -max(abs(math.log(cp[1].ratio(m))) for m in ("tok_s_gpu", "tok_s_user")),
    )[:3]
    items = [
        f"{c.label} on {c.gpu.upper()} at {_panel_title(c.panel)}, c={p.concurrency} "
        f"(tok/s/GPU {_x(p.ratio('tok_s_gpu'))}, tok/s/user {_x(p.ratio('tok_s_user'))})"
        for c, p in worst
    ]
    out.append("- Largest divergences: " + "; ".join(items) + ".")
    return out


def seed_chart_section(
    figures_dir: Path, rows: Iterable[Mapping[str, str]], *, predictor: Predictor | None = None
) -> list[str]:
    """Draw ``seed_<gpu>.png`` under ``figures_dir`` and return the markdown lines of the section
    (without its ``## TITLE`` heading). ``predictor`` defaults to the packaged constants."""
    rows = list(rows)
    predictor = predictor or Predictor()
    curves = collect(rows, predictor)
    drawn = {(c.gpu, c.panel) for c in curves}
    agg = [r for r in rows if _selected(r, "agg") and (r["hardware"], _panel(r)) in drawn]
    mtp = sum(
        1
        for r in rows
        if r.get("source") == "inferencex"
        and r.get("model") == MODEL
        and r.get("hardware") in GPUS
        and r.get("mode") == "disagg"
        and (r.get("spec_decode") or "none") != "none"
    )
    figures_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for gpu in GPUS:
        mine = [c for c in curves if c.gpu == gpu]
        if not mine:
            continue
        name = f"seed_{gpu}.png"
        _plot_gpu(figures_dir / name, gpu, mine, [r for r in agg if r["hardware"] == gpu])
        images.append(f"![{TITLE}: {gpu.upper()}]({figures_dir.name}/{name})")
    if not curves:
        return ["_No disaggregated DeepSeek-R1 InferenceX rows on GB200 or B200 in the input._"]
    band = f"±{round((BAND - 1) * 100)}%"
    lines = [
        "Every measured disaggregated DeepSeek-R1 configuration on GB200 and B200 (InferenceX rows with",
        f"`spec_decode == none`: {sum(len(c.points) for c in curves)} points, {len(curves)} "
        "topology/engine curves), priced by `tuner validate`'s",
        "predictor with the packaged constants. Each curve copies its measured row and sweeps the",
        f"concurrency log-spaced from 1 to twice its largest measured value (at least {MIN_LADDER_TOP});",
        "a hollow marker is the prediction at a measured concurrency, joined to the measured point",
        "by a dotted line. y: (input + output) tok/s over all GPUs, log scale; x: 1000 / median TPOT.",
        f"The table's last column lists the points off by more than {band}, with the TTFT ratio",
        "where tok/s/GPU is off.",
    ]
    if agg:
        where = " and ".join(g.upper() for g in GPUS if any(r["hardware"] == g for r in agg))
        lines.append(
            f"Grey squares: the {len(agg)} measured aggregated points ({where}) of the same panels, "
            "for context."
        )
    if mtp:
        lines.append(f"Left out: {mtp} MTP (speculative decoding) disagg rows.")
    lines += [
        "",
        *images,
        "",
        *_table(curves),
        "",
        "Where they diverge (computed from the table's points):",
        "",
    ]
    lines += _findings(curves)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="calibration points")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder of the PNGs")
    args = parser.parse_args(argv)
    lines = seed_chart_section(args.out, read_points(args.csv))
    print("\n".join([f"## {TITLE}", "", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
