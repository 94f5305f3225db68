"""`tuner profile`: the CPU path runs and writes a valid profile; profiles drive `tuner tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backends.simulator import SimulatorBackend
from serving import ConfigError, load_gpu
from serving.hardware_profile import load_profile, load_profile_gpu, validate_profile
from tests.serving.test_hardware_profile import entry_for, profile_doc, unknown_entry
from tuner.cli import main
from tuner.profiling import compare_rows, make_plan
from tuner.profiling.device import catalog_match
from tuner.profiling.measure import fit_overhead
from tuner.spec import build_problem, parse_spec


def _torch() -> Any:
    return pytest.importorskip("torch", reason="the profile tests need torch (scripts/test.sh installs it)")


# -- the CPU run -----------------------------------------------------------------------------------
def test_cpu_profile_runs_and_writes_a_valid_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _torch()
    out = tmp_path / "cpu.yaml"
    code = main(
        ["profile", "--device", "cpu", "--budget-s", "2", "-q", "--out", str(out), "--write-cpu-profile"]
    )
    assert code == 0
    doc = load_profile(out)  # validates against the schema
    assert doc["device"] == "cpu" and doc["elapsed_s"] < 30
    measured = doc["gpus"][0]["measured"]
    for key in (
        "hbm_copy_tb_s",
        "hbm_read_tb_s",
        "gemm_bf16_tflops",
        "attn_prefill_tflops",
        "moe_grouped_tflops",
    ):
        assert measured[key] > 0, key
    assert measured["gemm_fp8_tflops"] is None  # no fp8 on the CPU path
    assert doc["gpus"][0]["points"]["gemm"]
    with pytest.raises(ConfigError, match="never stands in for a GPU"):
        load_profile_gpu(out)
    assert "profiling the CPU" in capsys.readouterr().err


def test_cpu_run_refuses_to_write_a_gpu_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _torch()
    out = tmp_path / "node.yaml"
    assert main(["profile", "--device", "cpu", "--budget-s", "1", "-q", "--out", str(out)]) == 2
    assert not out.exists()
    assert "refusing to write a GPU profile from CPU figures" in capsys.readouterr().err


def test_cuda_requested_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    torch = _torch()
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["profile", "--device", "cuda", "-q"]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


@pytest.mark.slow  # two spawned torch processes: ~8 s on two busy cores
def test_collectives_spawn_path_on_gloo() -> None:
    _torch()
    from tuner.profiling.collectives import measure_collectives

    points = measure_collectives([0, 1], (4096,), device="cpu", iters=2, warmup=1)
    ops = {p["op"] for p in points}
    assert "all_reduce" in ops
    assert all(p["bus_gb_s"] > 0 and p["ranks"] == 2 for p in points)


# -- plans, fits, catalog matching (no torch needed) ------------------------------------------------
def test_budget_scales_the_plan() -> None:
    small, full = make_plan(30, "cuda", memory_bytes=80e9), make_plan(180, "cuda", memory_bytes=80e9)
    assert len(small.gemm_shapes) * len(small.gemm_m) < len(full.gemm_shapes) * len(full.gemm_m)
    assert full.replays == 20 and small.replays < full.replays
    assert full.rotate_bytes >= 512 * 2**20
    cpu = make_plan(3, "cpu")
    assert max(k for _, k, _ in cpu.gemm_shapes) < 1024 and cpu.rotate_bytes < full.rotate_bytes


def test_fit_overhead_recovers_a_line() -> None:
    sizes = [1e6, 5e6, 2e7, 8e7]
    overhead, tb_s = fit_overhead(sizes, [4.6 + b / 4.26e6 for b in sizes], fallback_tb_s=1.0)
    assert overhead == pytest.approx(4.6) and tb_s == pytest.approx(4.26)
    overhead, tb_s = fit_overhead([1e6], [10.0], fallback_tb_s=1.0)  # one size: slope fixed
    assert tb_s == 1.0 and overhead == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("name", "memory_gb", "expected"),
    [
        ("NVIDIA H200", 150.1, "h200_sxm"),
        ("NVIDIA H100 80GB HBM3", 85.0, "h100_sxm"),
        ("NVIDIA A100-SXM4-80GB", 85.1, "a100_sxm"),
        ("NVIDIA A100-SXM4-40GB", 42.4, None),
        ("NVIDIA H100 PCIe", 85.0, None),
        ("NVIDIA L40S", 48.3, "l40s"),
        ("NVIDIA RTX 6000 Ada Generation", 51.5, None),
    ],
)
def test_catalog_match(name: str, memory_gb: float, expected: str | None) -> None:
    found = catalog_match(name, memory_gb)
    assert (found.name if found else None) == expected


# -- compare ------------------------------------------------------------------------------------------
def test_compare_flags_a_throttled_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h200 = load_gpu("h200")
    entry = entry_for(h200, gemm_bf16_tflops=400.0)  # 40% of 989: a lowered power limit
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(profile_doc(entry)))
    rows = {row.label: row for row, _ in compare_rows(load_profile(path))}
    assert rows["GEMM bf16 TFLOPS (sustained)"].low()
    assert not rows["HBM copy TB/s"].low()
    assert rows["HBM copy TB/s"].of_peak == pytest.approx(assumed_of_peak())
    assert main(["profile", "--compare", str(path)]) == 0
    text = capsys.readouterr().out
    assert "LOW" in text and "GEMM bf16" in text


def assumed_of_peak() -> float:
    return SimulatorBackend().constants.hbm("hopper")


# -- tune with a profile ------------------------------------------------------------------------------
def _spec(tmp_path: Path, hardware: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "Qwen/Qwen3-32B",
        "hardware": hardware,
        "workload": {"isl": 1000, "osl": 200, "concurrency": [1, 8, 32]},
        "sla": {"min_tok_s_user": 10},
        "search_space": {"preset": "small"},
        "study": {"trials": 4, "sampler": "random", "seed": 1},
        "output_dir": str(tmp_path / "run"),
    }


def test_tune_an_unknown_gpu_from_its_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "rtx.yaml"
    profile.write_text(yaml.safe_dump(profile_doc(unknown_entry())))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(_spec(tmp_path, {"gpu": "H200", "gpus": 4})))
    code = main(["tune", str(spec), "--hardware-profile", str(profile), "-q"])
    assert code in (0, 1)  # 1 only when no deployment meets the SLA; the study ran either way
    run = tmp_path / "run"
    assert (run / "points.csv").is_file() and len((run / "points.csv").read_text().splitlines()) > 1
    stored = yaml.safe_load((run / "pick.yaml").read_text()) if (run / "pick.yaml").exists() else None
    if stored is not None:
        assert stored["spec"]["hardware"]["profile"] == str(profile)
        assert stored["spec"]["hardware"]["gpu"] == "NVIDIA RTX 6000 Ada Generation"
    capsys.readouterr()


def test_spec_hardware_profile_builds_the_measured_gpu(tmp_path: Path) -> None:
    profile = tmp_path / "rtx.yaml"
    profile.write_text(yaml.safe_dump(profile_doc(unknown_entry())))
    spec = parse_spec(_spec(tmp_path, {"profile": str(profile), "gpus": 4}))
    assert spec.hardware.gpu is None and spec.hardware.profile == str(profile)
    problem = build_problem(spec)
    assert problem.gpu.measured_hbm_tb_s == 0.85
    # validate-style prediction: the simulator prices a deployment on the measured GPU
    from search_spaces import load_space

    sim = SimulatorBackend()
    dep = next(d for d in load_space("small", {}).candidates(problem) if sim.check(d, problem) is None)
    assert all(p.tok_s_gpu > 0 for p in sim.measure(dep, problem))


def test_spec_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hardware\.gpu"):
        parse_spec(_spec(tmp_path, {"gpus": 4}))
    spec = parse_spec(_spec(tmp_path, {"profile": str(tmp_path / "absent.yaml"), "gpus": 4}))
    with pytest.raises(ConfigError, match=r"hardware\.profile"):
        build_problem(spec)


def test_written_profiles_validate() -> None:
    doc = profile_doc(entry_for(load_gpu("h100")))
    assert validate_profile(doc)["device"] == "cuda"
