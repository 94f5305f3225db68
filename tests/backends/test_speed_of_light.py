"""Speed of light: no simulated point of any example space is above its roofline bound
(serving/roofline.py), with and without multi-token prediction, and the bound can fail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from backends.simulator import SimulatorBackend
from search_spaces import load_space
from serving import (
    Deployment,
    EngineKnobs,
    LoadPoint,
    Parallelism,
    Problem,
    WorkerGroup,
    Workload,
    load_gpu,
    load_model,
)
from serving.roofline import Roofline, speed_of_light, ttft_bound_ms
from tuner.spec import StudySpec, build_problem, load_spec
from tuner.studies import default_preset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
#: The architecture scripts/make-tiny-model.py writes for examples/live-tiny-cpu.yaml.
TINY_LLAMA = {
    "num_hidden_layers": 2, "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4,
    "num_key_value_heads": 4, "vocab_size": 2048, "max_position_embeddings": 2048,
}  # fmt: skip


def _spec(path: Path, tmp: Path) -> StudySpec:
    spec = load_spec(path)
    if spec.model.startswith("models/"):  # a local checkpoint the live example builds
        model = tmp / Path(spec.model).name
        model.mkdir(exist_ok=True)
        (model / "config.json").write_text(json.dumps(TINY_LLAMA))
        spec = replace(spec, model=str(model))
    return spec


def _shares(spec: StudySpec, *, every: int) -> Iterator[tuple[str, str, float, float, float]]:
    """(spec_decode, candidate, share of the bound, TTFT, TTFT bound) for the points of every
    ``every``-th priceable candidate, without and with one MTP draft per step."""
    problem = build_problem(spec)
    space = load_space(default_preset(spec, problem), dict(spec.search_space.overrides))
    sims = {mode: SimulatorBackend(spec_decode=mode) for mode in ("none", "mtp")}
    for i, dep in enumerate(space.candidates(problem)):
        if i % every or sims["none"].check(dep, problem) is not None:
            continue
        for mode, sim in sims.items():
            roof = Roofline(dep, problem, draft_tokens=1 if mode == "mtp" else 0)
            for point in sim.measure(dep, problem):
                yield mode, dep.label(), roof.share(point).frac, point.ttft_ms_p50, roof.ttft_ms()


def _check(tmp: Path, every: int) -> tuple[int, float]:
    checked, top = 0, 0.0
    for path in EXAMPLES:
        for mode, label, frac, ttft, ttft_min in _shares(_spec(path, tmp), every=every):
            assert 0.0 < frac <= 1.0, (path.name, mode, label, frac)
            assert ttft >= ttft_min, (path.name, mode, label, ttft, ttft_min)
            checked, top = checked + 1, max(top, frac)
    return checked, top


def test_sampled_candidates_of_every_example_stay_below_speed_of_light(tmp_path: Path) -> None:
    checked, top = _check(tmp_path, every=23)
    assert checked > 1000 and top > 0.3  # the bound is not vacuous


@pytest.mark.slow
def test_no_candidate_of_any_example_is_above_its_speed_of_light(tmp_path: Path) -> None:
    checked, top = _check(tmp_path, every=1)
    assert checked > 80_000 and top < 1.0


def _problem(model: str = "Llama-3.1-8B", precision: str = "bf16") -> Problem:
    return Problem(
        arch=load_model(model),
        gpu=load_gpu("h200"),
        precision=precision,
        workload=Workload(isl=1024, osl=1024, concurrency=(64,)),
        gpus=8,
        gpus_per_node=8,
    )


def _agg(tp: int = 1, dp: int = 1, ep: int = 1) -> Deployment:
    return Deployment(
        mode="agg", agg=WorkerGroup(parallel=Parallelism(tp=tp, dp=dp, ep=ep), knobs=EngineKnobs())
    )


def _scaled(point: LoadPoint, factor: float) -> LoadPoint:
    """The same point served ``factor`` times faster (rates up, latencies down)."""
    return replace(
        point,
        requests_s=point.requests_s * factor,
        tok_s_user=point.tok_s_user * factor,
        tpot_ms_p50=point.tpot_ms_p50 / factor,
    )


def test_a_point_faster_than_the_hardware_is_above_the_bound() -> None:
    problem, dep = _problem(), _agg()
    point = SimulatorBackend().measure(dep, problem)[0]
    sol = speed_of_light(dep, problem, point)
    assert 0.3 < sol.frac < 1.0 and sol.role == "agg"
    assert speed_of_light(dep, problem, _scaled(point, 1.05 / sol.frac)).frac > 1.0
    assert ttft_bound_ms(dep, problem) < point.ttft_ms_p50


def test_mtp_bound_assumes_every_draft_accepted() -> None:
    # Decode at batch 64 is bandwidth bound: one draft per step can at most halve the steps,
    # hence the weight and KV reads per output token.
    problem, dep = _problem(), _agg()
    point = SimulatorBackend().measure(dep, problem)[0]
    plain, mtp = speed_of_light(dep, problem, point), speed_of_light(dep, problem, point, draft_tokens=1)
    assert mtp.frac == pytest.approx(plain.frac / 2, rel=0.05)


def test_disagg_bound_is_per_role() -> None:
    problem = _problem("Qwen3-235B-A22B", "fp8")
    group = WorkerGroup(parallel=Parallelism(tp=1, dp=4, ep=4), knobs=EngineKnobs())
    dep = Deployment(mode="disagg", prefill=group, decode=group)
    point = SimulatorBackend().measure(dep, problem)[0]
    sol = speed_of_light(dep, problem, point)
    assert {role for role, _ in sol.per_role} == {"prefill", "decode"}
    assert sol.frac == max(frac for _, frac in sol.per_role) and 0.0 < sol.frac <= 1.0
