"""AIConfigurator side by side in the fidelity report, without aiconfigurator installed:
``aic.py``'s row mapping (with a stand-in for AIC's estimate API), reading its predictions,
and the side-by-side scoring on the rows both AIC and the simulator price."""

from __future__ import annotations

import ast
import csv
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tuner.validate import Prediction, summarize

ROOT = Path(__file__).resolve().parents[2]
FIDELITY = ROOT / "benchmarks" / "fidelity"


def _load(name: str) -> ModuleType:
    if str(FIDELITY) not in sys.path:
        sys.path.insert(0, str(FIDELITY))
    spec = importlib.util.spec_from_file_location(f"fidelity_{name}", FIDELITY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"fidelity_{name}"] = module
    spec.loader.exec_module(module)
    return module


aic = _load("aic")
compare = _load("aic_compare")

BASE = {
    "kind": "load_point", "source": "inferencex", "precision": "fp8", "backend": "trtllm",
    "isl": "1024", "osl": "1024", "spec_decode": "none",
}  # fmt: skip


def _row(pid: str, **cols: str) -> dict[str, str]:
    return {"point_id": pid, **BASE, **cols}


class FakeAic:
    """Stands in for ``cli_estimate``: records each call, answers from ``answer``."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer or (lambda kw: _result(ttft=100.0, tpot=10.0, seq=2.0))

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.answer(kwargs)


def _result(ttft: float, tpot: float, seq: float, **raw: float) -> SimpleNamespace:
    return SimpleNamespace(ttft=ttft, tpot=tpot, raw={"seq/s": seq, **raw}, kv_cache_warning=None)


def _pricer(fake: FakeAic) -> Any:
    return aic.AicPricer(fake, lambda system, backend: "1.0")


def test_aic_script_imports_nothing_of_ours() -> None:
    tree = ast.parse((FIDELITY / "aic.py").read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {"serving", "backends", "search_spaces", "tuner", "fit", "report"}
    assert not {n.split(".")[0] for n in names} & ours


def test_agg_batch_is_concurrency_per_attention_dp_rank() -> None:
    fake = FakeAic()
    row = _row("a", model="deepseek-ai/DeepSeek-R1", hardware="b200", mode="agg", workers="1", tp="1",
               dp="8", ep="8", concurrency="4")  # fmt: skip
    out = _pricer(fake).price(row)
    call = fake.calls[0]
    assert out["status"] == "ok"
    assert call["system_name"] == "b200_sxm" and call["model_path"] == "deepseek-ai/DeepSeek-R1"
    assert (call["batch_size"], call["ctx_tokens"], call["attention_dp_size"]) == (1, 1024, 8)
    assert (call["moe_tp_size"], call["moe_ep_size"]) == (1, 8)
    assert (call["gemm_quant_mode"], call["moe_quant_mode"]) == ("fp8_block", "fp8_block")
    # 4 users on 8 ranks: half of AIC's 2 req/s; (isl + osl) tokens over 8 GPUs
    assert float(out["pred_tok_s_gpu"]) == pytest.approx(1.0 * 2048 / 8)
    assert float(out["pred_output_tok_s_gpu"]) == pytest.approx(1.0 * 1024 / 8)
    assert float(out["pred_tok_s_user"]) == pytest.approx(100.0)


def test_dense_fp8_uses_per_tensor_gemm_and_no_moe_parallelism() -> None:
    fake = FakeAic()
    row = _row("a", model="meta-llama/Llama-3.1-70B", hardware="h100_sxm", mode="agg", workers="2", tp="4",
               dp="1", ep="1", concurrency="64")  # fmt: skip
    out = _pricer(fake).price(row)
    call = fake.calls[0]
    assert call["model_path"] == "meta-llama/Meta-Llama-3.1-70B"
    assert (call["batch_size"], call["moe_tp_size"], call["gemm_quant_mode"]) == (32, None, "fp8")
    assert float(out["pred_tok_s_gpu"]) == pytest.approx(2.0 * 2 * 2048 / 8)  # two workers


def test_disagg_prefill_batch_one_decode_batch_per_decode_rank() -> None:
    raw = {"(p)seq/s/worker": 10.0, "(d)seq/s/worker": 4.0}
    fake = FakeAic(lambda kw: _result(ttft=300.0, tpot=20.0, seq=7.36, **raw))
    row = _row("d", model="deepseek-ai/DeepSeek-R1", hardware="gb200", mode="disagg", p_workers="1",
               p_tp="1", p_dp="4", p_ep="4", d_workers="2", d_tp="8", d_dp="1", d_ep="8",
               concurrency="64")  # fmt: skip
    out = _pricer(fake).price(row)
    call = fake.calls[0]
    assert call["mode"] == "disagg" and call["prefill_batch_size"] == 1
    assert (call["decode_batch_size"], call["decode_num_workers"], call["prefill_num_workers"]) == (32, 2, 1)
    assert (call["prefill_attention_dp_size"], call["prefill_moe_ep_size"]) == (4, 4)
    assert float(out["pred_tok_s_gpu"]) == pytest.approx(7.36 * 2048 / 20)
    assert float(out["pred_output_tok_s_gpu"]) == pytest.approx(7.36 * 1024 / 16)  # per decode GPU
    # 1 user on 2 decode ranks (batch 1 each): the decode supply halves and sets the rate
    out = _pricer(fake).price({**row, "concurrency": "1"})
    assert float(out["pred_tok_s_gpu"]) == pytest.approx(min(10 * 0.9, 4 * 2 * 0.92 * 0.5) * 2048 / 20)


def test_max_throughput_takes_the_best_batch_and_stops_at_kv_capacity() -> None:
    def answer(kw: Mapping[str, Any]) -> SimpleNamespace:
        res = _result(ttft=1.0, tpot=1.0, seq=kw["batch_size"] * kw["ctx_tokens"] / 1e4)
        res.kv_cache_warning = "over" if kw["batch_size"] > 64 else None
        return res

    fake = FakeAic(answer)
    row = _row("m", kind="max_throughput", model="meta-llama/Llama-3.1-8B", hardware="h100_sxm", mode="agg",
               workers="1", tp="1", dp="1", ep="1", isl="128", osl="128", concurrency="")  # fmt: skip
    out = _pricer(fake).price(row)
    assert out["status"] == "ok" and out["pred_ttft_ms"] == ""
    assert max(c["batch_size"] for c in fake.calls) == 80  # first batch past 64 is tried, then stop
    # 8192-token budget needs batch > 64 (a decode request beside 64 prompts): KV-bound here
    assert float(out["pred_output_tok_s_gpu"]) == pytest.approx(64 * 4096 / 1e4 * 128)


def test_missing_fp8_fmha_data_falls_back_to_bf16_fmha() -> None:
    def answer(kw: Mapping[str, Any]) -> SimpleNamespace:
        if kw["fmha_quant_mode"] == "fp8":
            raise ValueError("fmha_quant_mode=fp8 has no 'context_mla' perf data for this system")
        return _result(ttft=1.0, tpot=1.0, seq=1.0)

    fake = FakeAic(answer)
    row = _row("a", model="Qwen/Qwen3-32B", hardware="b200", mode="agg", workers="1", tp="1", dp="1",
               ep="1", concurrency="8")  # fmt: skip
    assert _pricer(fake).price(row)["status"] == "ok"
    assert [c["fmha_quant_mode"] for c in fake.calls] == ["fp8", "bfloat16"]


def test_rows_aic_cannot_price_say_why_in_one_line() -> None:
    def answer(kw: Mapping[str, Any]) -> SimpleNamespace:
        raise RuntimeError("OOM: does not fit in /very/long/path/data.parquet\nsecond line")

    pricer = _pricer(FakeAic(answer))
    base = _row("x", model="Qwen/Qwen3-32B", hardware="h100_sxm", mode="agg", workers="1", tp="1", dp="1",
                ep="1", concurrency="8")  # fmt: skip
    assert pricer.price(base)["status"] == "unsupported: RuntimeError: OOM: does not fit in data.parquet"
    assert pricer.price({**base, "spec_decode": "mtp"})["status"].startswith("unsupported: spec_decode mtp")
    assert "no AIC system" in pricer.price({**base, "hardware": "a10"})["status"]
    assert "concurrency is blank" in pricer.price({**base, "concurrency": ""})["status"]


# -- report side --------------------------------------------------------------------------------
ROWS = [
    _row("r1", model="m", hardware="h100_sxm", mode="agg", ttft_ms="100", tpot_ms="10", tok_s_gpu="1000"),
    _row("r2", model="m", hardware="h100_sxm", mode="agg", ttft_ms="100", tpot_ms="10", tok_s_gpu="1000"),
    _row("r3", model="m", hardware="b200", mode="agg", ttft_ms="100", tpot_ms="10", tok_s_gpu="1000",
         source="aic_silicon"),
    _row("r4", model="m", hardware="b200", mode="agg", ttft_ms="100", tpot_ms="10", tok_s_gpu="1000",
         spec_decode="mtp"),
]  # fmt: skip


def _ok(pid: str, scale: float) -> Prediction:
    values = {"pred_ttft_ms": 100 * scale, "pred_tpot_ms": 10 * scale, "pred_tok_s_gpu": 1000 * scale}
    return Prediction(pid, "ok", values)


def test_read_predictions_aligns_rows_and_marks_missing_ones(tmp_path: Path) -> None:
    path = tmp_path / "aic.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=aic.OUTPUT_COLUMNS)
        writer.writeheader()
        writer.writerow({"point_id": "r2", "status": "unsupported: no database", "pred_ttft_ms": ""})
        writer.writerow({"point_id": "r1", "status": "ok", "pred_ttft_ms": "110", "pred_tpot_ms": "11"})
    preds = compare.read_predictions(path, ROWS)
    assert [p.point_id for p in preds] == ["r1", "r2", "r3", "r4"]
    assert preds[0].status == "ok" and preds[0].values == {"pred_ttft_ms": 110.0, "pred_tpot_ms": 11.0}
    assert preds[1].status == "unsupported: no database"
    assert preds[2].status.startswith("unsupported") and preds[3].status.startswith("unsupported")


def test_side_by_side_scores_only_rows_both_price() -> None:
    aic_preds = [_ok("r1", 1.1), Prediction("r2", "unsupported: x"), _ok("r3", 3.0), _ok("r4", 1.0)]
    ours = [_ok("r1", 0.95), _ok("r2", 5.0), Prediction("r3", "unsupported: y"), _ok("r4", 1.0)]
    assert compare.both_price(ROWS, aic_preds, ours) == {"r1"}
    columns = [("TPOT", ("all", ""), "tpot_ms"), ("TTFT", ("all", ""), "ttft_ms")]
    table, n = compare.side_by_side(ROWS, aic_preds, {"in-sample": ours}, columns)
    assert n == 1
    lines = table.splitlines()
    assert lines[2] == "| AIConfigurator 0.12 | 10.0% (100%; 1) | 10.0% (100%; 1) |"
    assert lines[3] == "| ours, in-sample | 5.0% (100%; 1) | 5.0% (100%; 1) |"
    _, n_ext = compare.side_by_side(ROWS, aic_preds, {"in-sample": ours}, columns, keep=lambda r: False)
    assert n_ext == 0


def test_aic_section_and_headline_row(tmp_path: Path) -> None:
    aic_preds = [_ok("r1", 1.1), Prediction("r2", "unsupported: no database"), _ok("r3", 1.0), _ok("r4", 1)]
    ours = [_ok(r["point_id"], 1.0) for r in ROWS]
    columns = [("TPOT", ("all", ""), "tpot_ms")]
    text = compare.aic_section(ROWS, aic_preds, {"in-sample": ours}, columns, metrics=("tpot_ms",))
    assert "On the rows both price (2 rows)" in text
    assert "without AIC's own sweeps (1 rows)" in text
    assert "| no database | 1 |" in text
    # no predictions file: the section says how to make one, the headline has no AIC row
    section, summary = compare.aic_report(
        ROWS, {"in-sample": ours}, columns, metrics=("tpot_ms",), predictions=tmp_path / "none.csv",
        points=tmp_path / "points.csv",
    )  # fmt: skip
    assert summary is None and "--aic-python" in section
    report = _load("report")
    assert not hasattr(report, "AIC")
    headline = report._headline({"in-sample": summarize(ROWS, ours)}, summarize(ROWS, aic_preds))
    assert "| AIConfigurator 0.12 (rows it prices) | 66.7% |" in headline
