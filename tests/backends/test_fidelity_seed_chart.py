"""benchmarks/fidelity/seed_chart.py: the simulator's curves over measured DeepSeek-R1 disagg points.

Runs on a few rows of the shared calibration file (found via $TUNER_SHARED_DIR or by walking
up from this file, as tests/tuner/test_export.py finds shared/schemas); skipped without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.fidelity.seed_chart import GPUS, MODEL, seed_chart_section
from tuner.validate import read_points


def calibration_csv() -> Path | None:
    env = os.environ.get("TUNER_SHARED_DIR")
    if env and (Path(env) / "fidelity" / "calibration.csv").is_file():
        return Path(env) / "fidelity" / "calibration.csv"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "fidelity" / "calibration.csv").is_file():
            return parent / "shared" / "fidelity" / "calibration.csv"
    return None


def _rows() -> list[dict[str, str]]:
    path = calibration_csv()
    if path is None:
        pytest.skip("shared/fidelity/calibration.csv not found above tests/ and TUNER_SHARED_DIR unset")
    return read_points(path)


def test_seed_chart_draws_each_gpu_and_lists_each_topology(tmp_path: Path) -> None:
    rows = _rows()
    picked: list[dict[str, str]] = []
    for gpu in GPUS:  # the disagg rows of one (isl, osl, precision) panel per GPU, plus one agg row
        disagg = [
            r
            for r in rows
            if r["source"] == "inferencex"
            and r["model"] == MODEL
            and r["hardware"] == gpu
            and r["mode"] == "disagg"
            and r["spec_decode"] == "none"
        ]
        if not disagg:
            continue
        first = disagg[0]
        picked += [
            r
            for r in disagg
            if (r["isl"], r["osl"], r["precision"]) == (first["isl"], first["osl"], first["precision"])
        ]
    picked += [r for r in rows if r["model"] == MODEL and r["mode"] == "agg" and r["hardware"] == "b200"][:1]
    assert picked, "no DeepSeek-R1 disagg rows on GB200/B200 in the calibration file"

    lines = seed_chart_section(tmp_path / "fidelity", picked)

    text = "\n".join(lines)
    for gpu in {r["hardware"] for r in picked if r["mode"] == "disagg"}:
        png = tmp_path / "fidelity" / f"seed_{gpu}.png"
        assert png.is_file() and png.stat().st_size > 10_000, png
        assert f"(fidelity/seed_{gpu}.png)" in text
    table = [line for line in lines if line.startswith("| ") and "GPU |" not in line]
    for row in picked:
        if row["mode"] == "disagg":
            label = f"{row['topology']} ({row['backend']})"
            assert any(f"| {row['hardware'].upper()} |" in t and f"| {label} |" in t for t in table), label
    assert any(line.startswith("- Largest divergences:") for line in lines)
    assert "nan" not in text


def test_seed_chart_without_rows_says_so(tmp_path: Path) -> None:
    lines = seed_chart_section(tmp_path, [])
    assert len(lines) == 1 and "No disaggregated" in lines[0]
    assert not list(tmp_path.glob("*.png"))
