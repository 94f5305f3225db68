"""``tuner validate``: the prediction contract, the summary, the CLI exit codes, and (when the
shared calibration file is at hand) the in-sample error staying below its recorded level."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.validate import OUTPUT_COLUMNS, Predictor, format_summary, read_points, summarize

HEADER = (
    "point_id,kind,source,model,hardware,precision,backend,mode,topology,gpus,workers,tp,dp,ep,"
    "p_workers,p_tp,p_dp,p_ep,d_workers,d_tp,d_dp,d_ep,isl,osl,concurrency,spec_decode,stat,"
    "ttft_ms,tpot_ms,tok_s_user,tok_s_gpu,tok_s_gpu_basis,output_tok_s_gpu"
)
ROWS = [
    # agg load point with measurements
    "a1,load_point,aic_silicon,Qwen/Qwen3-8B,h100_sxm,bf16,vllm,agg,TP1,1,1,1,1,1,,,,,,,,,1024,256,8,none,mean,"
    "120,9.0,111,2500,derived_closed_loop,",
    # agg, measured columns blank
    "a2,load_point,aic_silicon,meta-llama/Llama-3.1-70B,b200,fp8,trtllm,agg,TP4,4,1,4,1,1,,,,,,,,,1024,1024,16,none,"
    "mean,,,,,,",
    # disagg load point
    "d1,load_point,inferencex,Qwen/Qwen3-32B,h200_sxm,fp8,sglang,disagg,1xTP2+1xTP2,4,,,,,1,2,1,1,1,2,1,1,"
    "1024,1024,32,none,median,300,20,50,700,published,300",
    # max throughput
    "m1,max_throughput,trtllm_perf_overview,meta-llama/Llama-3.1-8B,h100_sxm,fp8,trtllm,agg,TP1,1,1,1,1,1,"
    ",,,,,,,,128,128,,none,offline,,,,20000,derived_exact_lengths,10000",
    # multi-token prediction
    "t1,load_point,inferencex,deepseek-ai/DeepSeek-R1,b200,fp8,trtllm,agg,DEP8,8,1,1,8,8,,,,,,,,,1024,1024,64,mtp,"
    "median,500,20,50,600,published,300",
    # unsupported: unknown model
    "u1,load_point,nim,acme/Unknown-1B,h100_sxm,bf16,vllm,agg,TP1,1,1,1,1,1,,,,,,,,,128,128,1,none,mean,50,5,200,,,",
    # unsupported: a load point without its concurrency
    "u2,load_point,aic_silicon,Qwen/Qwen3-8B,h100_sxm,bf16,vllm,agg,TP1,1,1,1,1,1,,,,,,,,,128,128,,none,mean,,,,,,",
]


@pytest.fixture
def points(tmp_path: Path) -> Path:
    path = tmp_path / "points.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_one_prediction_per_row_with_statuses(points: Path) -> None:
    rows = read_points(points)
    preds = [Predictor().predict(r) for r in rows]
    assert [p.point_id for p in preds] == [r["point_id"] for r in rows]
    status = {p.point_id: p.status for p in preds}
    assert all(status[k] == "ok" for k in ("a1", "a2", "d1", "m1", "t1"))
    assert status["u1"].startswith("unsupported: ") and "Unknown-1B" in status["u1"]
    assert status["u2"] == "unsupported: column concurrency is blank"
    by_id = {p.point_id: p for p in preds}
    assert set(by_id["m1"].values) == {"pred_output_tok_s_gpu"}  # offline: throughput only
    for pid in ("a1", "a2", "d1", "t1"):
        v = by_id[pid].values
        assert v["pred_tok_s_user"] == pytest.approx(1000.0 / v["pred_tpot_ms"])
        assert all(math.isfinite(x) and x > 0 for x in v.values())
    # disagg output tok/s is per decode GPU (the data's basis): half the GPUs here
    d1 = by_id["d1"].values
    assert d1["pred_output_tok_s_gpu"] == pytest.approx(d1["pred_tok_s_gpu"] * 1024 / 2048 * 2)


def test_summary_scores_spec_none_rows_only(points: Path) -> None:
    rows = read_points(points)
    summary = summarize(rows, [Predictor().predict(r) for r in rows])
    overall = summary.slices[("all", "")]
    assert overall.rows == 6 and overall.ok == 4  # t1 (mtp) is not scored
    assert overall.metrics["ttft_ms"].n == 2  # a1 and d1 carry a measured TTFT
    assert overall.metrics["output_tok_s_gpu"].n == 2  # d1 and m1
    assert ("mode", "disagg") in summary.slices and ("source", "nim") in summary.slices
    table = format_summary(summary)
    assert table.startswith("| slice |") and "model=Qwen/Qwen3-8B" in table


def test_cli_writes_the_contract(points: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "pred.csv"
    assert main(["validate", str(points), "--out", str(out)]) == 0
    written = _read(out)
    assert list(written[0]) == list(OUTPUT_COLUMNS)
    assert [r["point_id"] for r in written] == ["a1", "a2", "d1", "m1", "t1", "u1", "u2"]
    assert written[3]["pred_ttft_ms"] == "" and float(written[3]["pred_output_tok_s_gpu"]) > 0
    assert written[5]["pred_tpot_ms"] == ""
    assert "coverage" in capsys.readouterr().out


def test_cli_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.csv" in err


def test_cli_missing_columns_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("point_id,kind,model\nx,load_point,Qwen/Qwen3-8B\n")
    assert main(["validate", str(bad), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing columns" in err and "hardware" in err


def test_cli_alternative_constants_and_bad_option(points: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    assert main(["validate", str(points), "--out", str(out), "--backend-options", "speed=2"]) == 2
    assert main(["validate", str(points), "--out", str(out), "--constants", str(tmp_path / "x.yaml")]) == 2


# The regression gate on the shared calibration data lives beside the simulator:
# tests/backends/test_simulator_fidelity.py (IN_SAMPLE_LIMITS).
