"""The seed-chart examples (examples/deepseek-r1-*.yaml) on the simulator: where the talk's
DEP2/DEP4 prefill workers fit, which of them reach the front, and that the TTFT limit keeps
the pick off a saturated point. The fronts are exact (the whole space priced), as the
study's screening computes them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from matplotlib.figure import Figure

from backends.simulator import SimulatorBackend
from serving import Deployment, EngineKnobs, Parallelism, WorkerGroup
from tuner.front import pareto_front
from tuner.pick import pick_best
from tuner.plot import draw_front, front_styles
from tuner.spec import build_problem, load_spec

from .simulated import EXAMPLES, Run, example_points

FP4 = "deepseek-r1-fp4-gb300.yaml"
FP8 = "deepseek-r1-gb200.yaml"


@pytest.fixture(scope="module")
def fp4() -> Run:
    return example_points(FP4)


def dep_pair(prefill_dp: int, decode_dp: int = 8) -> Deployment:
    def dep(dp: int) -> Parallelism:
        return Parallelism(tp=1, dp=dp, ep=dp)

    return Deployment(
        "disagg",
        prefill=WorkerGroup(dep(prefill_dp), 1, EngineKnobs(max_num_seqs=64, max_num_batched_tokens=16384)),
        decode=WorkerGroup(dep(decode_dp), 1),
    )


@pytest.mark.parametrize("prefill_dp", [2, 4])
def test_talk_prefill_workers_fit_at_fp4_on_gb300_not_at_fp8_on_gb200(prefill_dp: int) -> None:
    dep = dep_pair(prefill_dp)
    sim = SimulatorBackend()
    assert sim.check(dep, build_problem(load_spec(EXAMPLES / FP4))) is None
    assert sim.check(dep, build_problem(load_spec(EXAMPLES / FP8))) is not None


def test_fp4_front_holds_the_talk_dep2_curve_and_a_dep4_prefill(
    fp4: Run,
) -> None:
    spec, points = fp4
    assert (spec.model, spec.precision, spec.hardware.gpu) == ("nvidia/DeepSeek-R1-FP4", "fp4", "GB300")
    front = {m.label for m in pareto_front(points)}
    assert "1xDEP2+1xDEP8" in front, sorted(front)
    assert any(label.split("+")[0].endswith("xDEP4") for label in front), sorted(front)
    assert sum(label.split("+")[0].endswith("xDEP2") for label in front) >= 3, sorted(front)


def test_fp4_chart_labels_every_front_topology(fp4: Run) -> None:
    spec, points = fp4
    ax = Figure().subplots()
    draw_front(ax, points, sla=spec.sla, pick=pick_best(points, spec.sla), title="t")
    legend = ax.get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    front = {m.label for m in pareto_front(points)}
    assert len(front) > 10 and front <= set(texts)
    styles = front_styles(points)
    assert len(set(styles.values())) == len(styles) == len(front)


def test_fp8_ttft_limit_moves_the_pick_off_the_saturated_point() -> None:
    spec, points = example_points(FP8)
    limit = spec.sla.max_ttft_ms
    assert limit is not None and load_spec(EXAMPLES / FP4).sla.max_ttft_ms == limit
    plain = replace(spec.sla, confidence=0.5)  # no robust margin: the TTFT limit alone moves it
    saturated = pick_best(points, replace(plain, max_ttft_ms=None)).chosen
    assert saturated.point.metric("ttft_ms", 50) > 5 * limit  # requests queue for seconds
    chosen = pick_best(points, plain).chosen
    assert chosen.point.metric("ttft_ms", 50) <= limit
    assert chosen.point.concurrency < saturated.point.concurrency
