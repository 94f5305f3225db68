"""tuner/plot.py on real simulator points: every topology on the front has its own legend
entry and style, the SLA's TTFT limit is on the chart (note, legend, hollow markers), and a
CPU run's title says CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tuner.front import pareto_front
from tuner.pick import pick_best
from tuner.plot import chart_title, draw_front, front_styles, plot_front
from tuner.spec import load_spec

from .simulated import EXAMPLES, Run, example_points


@pytest.fixture(scope="module")
def dense() -> Run:
    return example_points("qwen3-32b-h200.yaml")


@pytest.fixture
def ax() -> Axes:
    """An Axes of a figure outside pyplot (no backend, nothing to close)."""
    return Figure().subplots()


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_every_front_topology_has_its_own_legend_entry(dense: Run, ax: Axes) -> None:
    spec, points = dense
    front_labels = {m.label for m in pareto_front(points)}
    assert "1xTP1+1xTP4" in front_labels  # the topology the old top-12 colouring left grey
    draw_front(ax, points, sla=spec.sla, pick=pick_best(points, spec.sla), title="t")
    texts = legend_texts(ax)
    assert front_labels <= set(texts)
    assert len([t for t in texts if t in front_labels]) == len(front_labels)  # one entry each
    assert not {m.label for m in points} - front_labels & set(texts)  # the rest are unlabelled
    styles = front_styles(points)
    assert set(styles) == front_labels
    assert len(set(styles.values())) == len(styles)  # no two share a colour and marker


def test_ttft_limit_is_on_the_chart_and_failing_points_are_hollow(dense: Run, ax: Axes) -> None:
    spec, points = dense
    assert spec.sla.max_ttft_ms == 2000
    draw_front(ax, points, sla=spec.sla, pick=None, title="t")
    notes = [t.get_text() for t in ax.texts]
    assert any("TTFT p50 <= 2000 ms" in n for n in notes), notes
    assert "hollow: TTFT p50 > 2000 ms" in legend_texts(ax)
    late = {(m.point.tok_s_user, m.point.tok_s_gpu) for m in points if m.point.metric("ttft_ms", 50) > 2000}
    hollow, filled = set(), set()
    for line in ax.get_lines():
        if line.get_marker() in ("None", None, "") or line.get_label().startswith("pick"):
            continue
        xy = set(zip(line.get_xdata(), line.get_ydata(), strict=True))  # type: ignore[arg-type]
        (hollow if line.get_markerfacecolor() == "white" else filled).update(xy)
    assert hollow and hollow <= late
    assert not filled & late


def test_cpu_run_title_says_cpu_not_the_catalog_gpu() -> None:
    cpu = load_spec(EXAMPLES / "live-tiny-cpu.yaml")
    assert cpu.backend.options["devices"] == "cpu" and cpu.hardware.gpu == "H100"
    title = chart_title(cpu)
    assert "CPU" in title and "H100" not in title, title
    gpu_title = chart_title(load_spec(EXAMPLES / "qwen3-32b-h200.yaml"))
    assert "8 x H200" in gpu_title and "CPU" not in gpu_title


def test_plot_front_writes_the_png(dense: Run, tmp_path: Path) -> None:
    spec, points = dense
    path = tmp_path / "pareto.png"
    plot_front(path, points, sla=spec.sla, pick=pick_best(points, spec.sla), title=chart_title(spec))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
