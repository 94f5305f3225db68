"""Hardware profiles: schema errors name the field; a profile prices like (or beyond) the catalog."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends.simulator import SimulatorBackend
from backends.simulator.measured import assumed_figures
from serving import (
    GPU,
    ConfigError,
    Deployment,
    EngineKnobs,
    Parallelism,
    Problem,
    WorkerGroup,
    Workload,
    load_gpu,
    load_model,
)
from serving.hardware_profile import (
    PROFILE_KIND,
    SCHEMA_VERSION,
    gpu_from_entry,
    load_profile_gpu,
    select_entry,
    validate_profile,
)


def entry_for(gpu: GPU, **measured: float | None) -> dict[str, Any]:
    """A profile entry whose measured figures are exactly what the simulator assumes."""
    figures = assumed_figures(gpu)
    figures.update(measured)
    return {
        "name": f"NVIDIA {gpu.name}",
        "catalog_id": gpu.name,
        "count": 8,
        "memory_gb": gpu.hbm_gb,
        "environment": {"generation": gpu.generation, "power_limit_w": gpu.board_power_w, "driver": "580.0"},
        "datasheet": {
            "bf16_tflops": gpu.bf16_tflops,
            "fp8_tflops": gpu.fp8_tflops or None,
            "fp4_tflops": gpu.fp4_tflops or None,
            "hbm_tb_s": gpu.hbm_tb_s,
        },
        "interconnect": {
            "nvlink_domain": gpu.nvlink_domain,
            "nvlink_gb_s": gpu.nvlink_gb_s,
            "ib_gb_s": gpu.ib_gb_s,
            "source": "catalog",
        },
        "measured": figures,
    }


def profile_doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "kind": PROFILE_KIND, "device": "cuda", "gpus": list(entries)}


def unknown_entry() -> dict[str, Any]:
    """A GPU no catalog lists (an RTX-class card with a measured profile)."""
    return {
        "name": "NVIDIA RTX 6000 Ada Generation",
        "catalog_id": None,
        "count": 4,
        "memory_gb": 51.5,
        "datasheet": {"bf16_tflops": None, "fp8_tflops": None, "hbm_tb_s": None},
        "interconnect": {"nvlink_domain": 4, "nvlink_gb_s": 22.0, "ib_gb_s": 25.0, "source": "assumed"},
        "measured": {
            "hbm_copy_tb_s": 0.85,
            "hbm_read_tb_s": 0.83,
            "gemm_bf16_tflops": 250.0,
            "gemm_fp8_tflops": 480.0,
            "gemm_overhead_us": 5.1,
            "attn_prefill_tflops": 160.0,
            "attn_decode_overhead_us": 7.0,
            "attn_decode_tb_s": 0.86,
            "allreduce_bus_gb_s": 18.0,
        },
    }


def write(tmp_path: Path, doc: dict[str, Any], name: str = "node.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def problem(gpu: GPU, model: str = "Qwen/Qwen3-32B", precision: str = "bf16") -> Problem:
    return Problem(
        arch=load_model(model),
        gpu=gpu,
        precision=precision,
        workload=Workload(isl=2000, osl=500, concurrency=(1, 8, 64, 256)),
        gpus=8,
        gpus_per_node=8,
    )


def agg(tp: int = 1, dp: int = 1, ep: int = 1, **knobs: Any) -> Deployment:
    return Deployment(
        mode="agg",
        agg=WorkerGroup(parallel=Parallelism(tp=tp, dp=dp, ep=ep), count=1, knobs=EngineKnobs(**knobs)),
    )


def disagg() -> Deployment:
    p = WorkerGroup(parallel=Parallelism(tp=2), count=1, knobs=EngineKnobs())
    d = WorkerGroup(parallel=Parallelism(tp=4), count=1, knobs=EngineKnobs())
    return Deployment(mode="disagg", prefill=p, decode=d)


# -- a profile identical to a catalog entry prices identically ----------------------------------
@pytest.mark.parametrize(
    ("gpu_name", "model", "precision", "deployment"),
    [
        ("h200", "Qwen/Qwen3-32B", "bf16", agg(tp=1)),
        ("h200", "Qwen/Qwen3-32B", "bf16", agg(tp=4)),
        ("h100", "Qwen/Qwen3-32B", "fp8", agg(tp=2, kv_cache_dtype="fp8")),
        ("h200", "Qwen/Qwen3-32B", "bf16", disagg()),
        ("b200", "deepseek-ai/DeepSeek-R1", "fp8", agg(tp=1, dp=8, ep=8)),
        ("a100", "Qwen/Qwen3-32B", "bf16", agg(tp=8)),
    ],
)
def test_identical_profile_gives_the_catalog_predictions(
    tmp_path: Path, gpu_name: str, model: str, precision: str, deployment: Deployment
) -> None:
    catalog = load_gpu(gpu_name)
    measured_gpu = load_profile_gpu(write(tmp_path, profile_doc(entry_for(catalog))))
    assert measured_gpu.measured and measured_gpu.name == catalog.name
    sim = SimulatorBackend()
    expected = sim.measure(deployment, problem(catalog, model, precision))
    got = sim.measure(deployment, problem(measured_gpu, model, precision))
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        for key, value in b.to_dict().items():
            assert a.to_dict()[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key


def test_measured_figures_change_predictions(tmp_path: Path) -> None:
    """A throttled H200 (half the HBM bandwidth) decodes slower than the catalog's."""
    catalog = load_gpu("h200")
    slow = assumed_figures(catalog)
    slow_entry = entry_for(
        catalog,
        hbm_copy_tb_s=float(slow["hbm_copy_tb_s"] or 0) / 2,
        attn_decode_tb_s=float(slow["attn_decode_tb_s"] or 0) / 2,
    )
    throttled = load_profile_gpu(write(tmp_path, profile_doc(slow_entry)))
    sim = SimulatorBackend()
    fast_pts = sim.measure(agg(tp=1), problem(catalog))
    slow_pts = sim.measure(agg(tp=1), problem(throttled))
    assert slow_pts[0].tpot_ms_p50 > 1.5 * fast_pts[0].tpot_ms_p50


# -- an unknown GPU becomes usable -----------------------------------------------------------------
def test_unknown_gpu_prices_from_its_profile(tmp_path: Path) -> None:
    gpu = load_profile_gpu(write(tmp_path, profile_doc(unknown_entry())))
    assert gpu.name == "NVIDIA RTX 6000 Ada Generation"
    assert gpu.bf16_tflops == 250.0 and gpu.measured_bf16_tflops == 250.0
    assert gpu.fp8_tflops == 480.0 and gpu.measured_link_gb_s == 18.0
    points = SimulatorBackend().measure(agg(tp=2), problem(gpu))
    assert [p.concurrency for p in points] == [1, 8, 64, 256]
    assert all(p.tok_s_gpu > 0 for p in points)


def test_select_entry_among_several_types() -> None:
    doc = profile_doc(entry_for(load_gpu("h100")), unknown_entry())
    validate_profile(doc)
    assert select_entry(doc, "H100")["catalog_id"] == "h100_sxm"
    assert select_entry(doc, "nvidia rtx 6000 ada generation")["count"] == 4
    with pytest.raises(ConfigError, match="several GPU types"):
        select_entry(doc)
    with pytest.raises(ConfigError, match="not in the hardware profile"):
        select_entry(doc, "B200")


# -- bad profiles: one clear error naming the field ------------------------------------------------
def _bad(change: Any) -> dict[str, Any]:
    doc = profile_doc(unknown_entry())
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            lambda d: d["gpus"][0]["measured"].pop("hbm_copy_tb_s"),
            "profile.gpus[0].measured.hbm_copy_tb_s",
            "required",
        ),
        (
            lambda d: d["gpus"][0]["measured"].update(hbm_copy_tb_s=-1.0),
            "profile.gpus[0].measured.hbm_copy_tb_s",
            "> 0",
        ),
        (
            lambda d: d["gpus"][0]["measured"].update(gemm_bf16_tflops="250 TFLOPS"),
            "profile.gpus[0].measured.gemm_bf16_tflops",
            "unit: tflops",
        ),
        (
            lambda d: d["gpus"][0]["measured"].update(hbm_copy_gb_s=850.0),
            "profile.gpus[0].measured.hbm_copy_gb_s",
            "use hbm_copy_tb_s",
        ),
        (
            lambda d: d["gpus"][0]["interconnect"].update(nvlink_gb_s=0),
            "profile.gpus[0].interconnect.nvlink_gb_s",
            "> 0",
        ),
        (lambda d: d.pop("gpus"), "profile.gpus", "required"),
        (lambda d: d.update(schema_version=0), "profile.schema_version", "must be 1"),
        (lambda d: d.update(schema_version=99), "profile.schema_version", "upgrade the tuner"),
        (lambda d: d.update(device="tpu"), "profile.device", "allowed: cuda, cpu"),
        (lambda d: d["gpus"][0].update(count=0), "profile.gpus[0].count", ">= 1"),
    ],
)
def test_bad_profile_gets_one_clear_error(change: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_profile(_bad(change))
    assert info.value.field == field
    assert words in str(info.value)


def test_cpu_profile_is_never_a_gpu(tmp_path: Path) -> None:
    doc = profile_doc(unknown_entry())
    doc["device"] = "cpu"
    with pytest.raises(ConfigError, match="never stands in for a GPU"):
        load_profile_gpu(write(tmp_path, doc))


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable profile YAML"):
        load_profile_gpu(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("gpus: [\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_profile_gpu(tmp_path / "broken.yaml")


def test_catalog_gpus_carry_no_measured_figures() -> None:
    gpu = load_gpu("h200")
    assert not gpu.measured
    assert gpu_from_entry(entry_for(gpu)).measured
    assert dataclasses.replace(gpu, gemm_overhead_us=4.0).measured


def test_profile_entry_is_not_mutated() -> None:
    entry = entry_for(load_gpu("h100"))
    before = copy.deepcopy(entry)
    gpu_from_entry(entry)
    assert entry == before


def test_board_power_is_the_profiled_power_limit_else_the_catalogs() -> None:
    entry = entry_for(load_gpu("B200"))
    entry["environment"]["power_limit_w"] = 700.0  # a card NVML read at a 700 W limit
    assert gpu_from_entry(entry).board_power_w == 700.0
    del entry["environment"]["power_limit_w"]
    assert gpu_from_entry(entry).board_power_w == load_gpu("B200").board_power_w == 1000.0
    assert gpu_from_entry(unknown_entry()).board_power_w == 0.0  # the simulator's energy: missing
