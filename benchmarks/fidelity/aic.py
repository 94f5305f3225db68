"""Price measured serving points with NVIDIA AIConfigurator, in the ``tuner validate`` format.

Runs with any Python where ``aiconfigurator`` 0.12 is importable (``pip install
'.[benchmark]'``, CPU-only) and imports nothing of ours, so a side virtual environment works:

    python3 -m venv /tmp/aicvenv && /tmp/aicvenv/bin/pip install aiconfigurator==0.12.0
    /tmp/aicvenv/bin/python benchmarks/fidelity/aic.py \\
        --csv ../shared/fidelity/calibration.csv --out docs/fidelity/aic_predictions.csv

It reads a points CSV with the columns of ``shared/fidelity/calibration.csv`` and writes one
row per input row: ``point_id,status,pred_ttft_ms,pred_tpot_ms,pred_tok_s_user,pred_tok_s_gpu,
pred_output_tok_s_gpu``, status ``ok`` or ``unsupported: <reason>``.
``docs/fidelity/aic_predictions.csv`` was produced this way with aiconfigurator 0.12.0, its
default perf database per system and backend (TRT-LLM 1.3.0rc20, SGLang 0.5.14, vLLM 0.24.0,
``database_mode=SILICON``), on one CPU core.

Every row is priced with AIConfigurator's single-point estimate API
(``aiconfigurator.cli.api.cli_estimate``, the Python form of ``aiconfigurator cli estimate``)
and nothing of AIC is tuned here. How a row maps:

- model: the Hugging Face id of the same architecture among AIC's bundled model configs
  (``meta-llama/Llama-3.1-8B`` -> ``meta-llama/Meta-Llama-3.1-8B``, etc.); hardware:
  ``h100_sxm, h200_sxm, b200, gb200, b300, gb300`` -> AIC systems ``h100_sxm, h200_sxm,
  b200_sxm, gb200, b300_sxm, gb300``; backend ``trtllm|sglang|vllm`` as is, at the default
  (``current``) database version of that system and backend.
- precision -> quantisation modes (GEMM / MoE / KV cache / FMHA): ``bf16`` all bfloat16;
  ``fp8`` the modes of the public FP8 checkpoints as AIC labels them: per-tensor ``fp8`` GEMM
  for the dense models on TRT-LLM and vLLM (AIC's silicon sample labels its Llama-3.1 and
  Qwen3-32B FP8 runs so), ``fp8_block`` GEMM for SGLang and for the block-scaled MoE
  checkpoints (DeepSeek-R1, Qwen3-235B-A22B-FP8, Qwen3-30B-A3B-FP8, which AIC reads as
  ``fp8_block`` from their bundled configs), ``fp8_block`` MoE, fp8 KV cache and fp8 FMHA;
  ``fp4`` NVFP4 GEMM and MoE with fp8 KV cache and FMHA (AIC's reading of NVIDIA's NVFP4
  checkpoints). AIC's own per-system resolution (FMHA by available data, NVFP4 per system)
  then applies as in ``cli estimate``; where its database has no fp8 context-attention
  data for a system/backend/layout (e.g. DeepSeek MLA on some), the row is priced with
  bfloat16 FMHA, AIC's own fallback for a checkpoint whose fp8 FMHA it cannot price.
- parallelism per worker: ``tp_size=tp``, ``attention_dp_size=dp``, and for MoE models
  ``moe_ep_size=ep``, ``moe_tp_size=tp*dp/ep``; disaggregated rows the same from the
  ``p_*`` and ``d_*`` columns, ``prefill_num_workers=p_workers``,
  ``decode_num_workers=d_workers``.
- ``load_point`` rows, aggregated: AIC's ``agg`` mode (``run_agg``: its steady-state model of
  in-flight batching, mixed prefill+decode steps then decode-only steps) with
  ``batch_size`` = concurrency per attention-DP rank = ceil(concurrency / (workers * dp)),
  which is how AIC's shipped silicon sample (``aiconfigurator_core/systems/silicon_sample.csv``)
  records its own closed-loop runs (``silicon_concurrency=512``, tp4 dp4 -> ``batch_size``
  128), and ``ctx_tokens`` = isl (AIC's ``cli estimate`` default: one prompt per mixed step,
  which is also the steady state of a closed loop, where each user's next prompt arrives
  spread out, b/osl prompts per step; ``--agg-ctx-tokens budget`` uses the engines'
  8192-token budget instead, as a sensitivity check). Of the calls AIC offers this matches a
  closed loop best: ``static`` prices one synchronised batch (every prompt prefilled at once,
  then decode at a constant batch), which a closed loop at steady state is not. TTFT is AIC's:
  prefill time times its heuristic queueing factor (2-4); AIC models no queue behind a full
  batch, so its TTFT is expected to run low at high load.
- ``load_point`` rows, disaggregated: AIC's ``disagg`` mode (static prefill and static
  decode workers, rate-matched with its 0.9 / 0.92 degradation factors; TTFT is the prefill
  latency times its 1.8 queueing correction) with ``prefill_batch_size`` 1 and
  ``decode_batch_size`` = ceil(concurrency / (d_workers * d_dp)), again as AIC's silicon
  sample records its disaggregated runs (prefill batch 1, decode batch = concurrency per
  decode attention rank).
- throughput: AIC's request rate (``seq/s``; for agg over the worker's ranks, for disagg
  after rate matching) times the deployment's workers, scaled by concurrency / (batch *
  ranks) where the concurrency does not fill every rank (fewer users than ranks);
  ``pred_tok_s_gpu`` = rate * (isl + osl) / all GPUs, ``pred_output_tok_s_gpu`` = rate * osl
  / GPUs (per *decode* GPU for disagg rows, the basis the data uses), ``pred_tok_s_user`` =
  1000 / TPOT.
- ``max_throughput`` rows (offline, all requests queued): the best ``pred_output_tok_s_gpu``
  over AIC ``agg`` estimates at every batch size of AIC's own agg sweep schedule (1-1024
  per rank, extended to 1536 and 2048, TRT-LLM's default ``max_batch_size``) and context
  budgets isl, 2 isl, 4 isl ... up to max(8192, isl) (the engines' default token budget),
  stopping a budget's sweep where AIC reports the batch out of memory or beyond its
  KV-cache capacity.
- ``spec_decode == mtp`` rows are ``unsupported``: AIC 0.12 prices MTP only with a given
  accepted-token rate (``nextn_accepted``, never inferred), which the data does not give.
- anything AIC rejects (no database or model data for a system/backend/quantisation, a
  layout it cannot model, out of memory) is ``unsupported: <its error, one line>``.

Prints one progress line (rows done, elapsed seconds) and pins itself to one CPU core.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

OUTPUT_COLUMNS = (
    "point_id", "status", "pred_ttft_ms", "pred_tpot_ms", "pred_tok_s_user", "pred_tok_s_gpu",
    "pred_output_tok_s_gpu",
)  # fmt: skip

#: Our hardware ids -> AIConfigurator system names (aiconfigurator_core/systems/*.yaml).
SYSTEMS = {
    "h100_sxm": "h100_sxm",
    "h200_sxm": "h200_sxm",
    "b200": "b200_sxm",
    "gb200": "gb200",
    "b300": "b300_sxm",
    "gb300": "gb300",
}
#: Architecture ids of the data -> the same architecture among AIC's bundled model configs.
MODELS = {
    "meta-llama/Llama-3.1-8B": "meta-llama/Meta-Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B": "meta-llama/Meta-Llama-3.1-70B",
    "Qwen/Qwen3-32B": "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B": "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B": "Qwen/Qwen3-235B-A22B",
    "deepseek-ai/DeepSeek-R1": "deepseek-ai/DeepSeek-R1",
}
#: Mixture-of-experts models (MoE parallelism is passed for these only).
MOE_MODELS = {"Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B", "deepseek-ai/DeepSeek-R1"}
BACKENDS = ("trtllm", "sglang", "vllm")
#: Batch sizes per attention-DP rank tried for max_throughput rows: AIC's agg sweep schedule
#: (1-1024), then 1536 and 2048 (TRT-LLM's default max_batch_size, which trtllm-bench runs
#: reach; our simulator's offline ladder goes as far).
BATCH_SCHEDULE = (
    *range(1, 16), *range(16, 32, 4), *range(32, 64, 8), *range(64, 256, 16), *range(256, 512, 32),
    512, 768, 1024, 1536, 2048,
)  # fmt: skip
#: The engines' default per-step token budget (TRT-LLM max_num_tokens, SGLang chunked
#: prefill, vLLM max_num_batched_tokens): the largest context budget tried offline.
TOKEN_BUDGET = 8192
#: AIC 0.12's disagg rate-matching degradation factors (prefill, decode), used when the
#: concurrency fills only part of the decode ranks; read from AIC where it exposes them.
RATE_MATCH_DEFAULTS = (0.9, 0.92)


class Unsupported(Exception):
    """A row AIC cannot price; the message is the ``unsupported:`` reason."""


def quant_modes(model: str, precision: str, backend: str) -> dict[str, str | None]:
    """GEMM / MoE / KV-cache / FMHA quantisation modes for a row (module docstring)."""
    if precision == "bf16":
        return {
            "gemm_quant_mode": "bfloat16",
            "moe_quant_mode": "bfloat16" if model in MOE_MODELS else None,
            "kvcache_quant_mode": "bfloat16",
            "fmha_quant_mode": "bfloat16",
        }
    if precision == "fp8":
        block = model in MOE_MODELS or backend == "sglang"
        return {
            "gemm_quant_mode": "fp8_block" if block else "fp8",
            "moe_quant_mode": "fp8_block" if model in MOE_MODELS else None,
            "kvcache_quant_mode": "fp8",
            "fmha_quant_mode": "fp8",
        }
    if precision == "fp4":
        return {
            "gemm_quant_mode": "nvfp4",
            "moe_quant_mode": "nvfp4" if model in MOE_MODELS else None,
            "kvcache_quant_mode": "fp8",
            "fmha_quant_mode": "fp8",
        }
    raise Unsupported(f"precision {precision!r} (known: bf16, fp8, fp4)")


def _int(row: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = (row.get(name) or "").strip()
    if not text:
        if default is None:
            raise Unsupported(f"column {name} is blank")
        return default
    try:
        value = float(text)
    except ValueError:
        raise Unsupported(f"column {name} is not a number: {text!r}") from None
    if value != int(value) or value < 1:
        raise Unsupported(f"column {name} must be a positive integer, got {text}")
    return int(value)


def _parallel(row: Mapping[str, str], prefix: str, moe: bool) -> dict[str, int | None]:
    tp, dp, ep = (_int(row, f"{prefix}{n}", 1) for n in ("tp", "dp", "ep"))
    if (tp * dp) % ep:
        raise Unsupported(f"{prefix}ep={ep} does not divide {prefix}tp*{prefix}dp={tp * dp}")
    return {
        "tp": tp,
        "dp": dp,
        "moe_tp": tp * dp // ep if moe else None,
        "moe_ep": ep if moe else None,
    }


def _no_fp8_fmha_data(exc: BaseException) -> bool:
    """AIC's two ways of saying its database lacks fp8 context-attention data."""
    text = str(exc)
    return "fmha_quant_mode=fp8 has no" in text or 'fmha_quant: "fp8"' in text


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message, file
    paths cut to their last component."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"(/[^/\s]+)+/([^/\s]+)", r"\2", text)
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AicPricer:
    """Prices calibration rows with AIC's ``cli_estimate`` (one call per load point)."""

    def __init__(self, estimate: Callable[..., Any], latest_version: Callable[..., str | None]):
        self._estimate = estimate
        self._latest_version = latest_version
        self._versions: dict[tuple[str, str], str | None] = {}
        self.rate_match = RATE_MATCH_DEFAULTS
        #: ctx_tokens of agg load points: "isl" (AIC's default) or "budget" (TOKEN_BUDGET).
        self.agg_ctx = "isl"

    @classmethod
    def from_aic(cls) -> AicPricer:
        from aiconfigurator.cli.api import cli_estimate
        from aiconfigurator.sdk.perf_database import get_latest_database_version

        pricer = cls(cli_estimate, get_latest_database_version)
        try:
            from aiconfigurator.sdk import picking

            pricer.rate_match = (
                float(picking._RATE_MATCHING_PREFILL_DEGRADATION_FACTOR),
                float(picking._RATE_MATCHING_DECODE_DEGRADATION_FACTOR),
            )
        except (ImportError, AttributeError):
            pass
        return pricer

    def version(self, system: str, backend: str) -> str:
        key = (system, backend)
        if key not in self._versions:
            self._versions[key] = self._latest_version(system=system, backend=backend)
        found = self._versions[key]
        if found is None:
            raise Unsupported(f"no AIC database for system {system}, backend {backend}")
        return found

    def price(self, row: Mapping[str, str]) -> dict[str, str]:
        """One output row (status ``ok`` or ``unsupported: ...``) for one input row."""
        out = {c: "" for c in OUTPUT_COLUMNS}
        out["point_id"] = row.get("point_id", "")
        try:
            values = self._values(row)
        except Unsupported as exc:
            out["status"] = f"unsupported: {exc}"
            return out
        except Exception as exc:  # AIC's own rejection of the row, kept as its reason
            out["status"] = f"unsupported: {one_line(exc)}"
            return out
        out["status"] = "ok"
        for key, value in values.items():
            out[key] = f"{value:.6g}" if math.isfinite(value) else ""
        return out

    def _values(self, row: Mapping[str, str]) -> dict[str, float]:
        spec = (row.get("spec_decode") or "none").strip()
        if spec != "none":
            raise Unsupported(
                f"spec_decode {spec}: AIC 0.12 prices MTP only with a given accepted-token rate"
            )
        kind = row.get("kind", "")
        if kind not in ("load_point", "max_throughput"):
            raise Unsupported(f"kind {kind!r} (allowed: load_point, max_throughput)")
        hardware, model = row.get("hardware", ""), row.get("model", "")
        backend = (row.get("backend") or "vllm").strip()
        if hardware not in SYSTEMS:
            raise Unsupported(f"hardware {hardware!r} has no AIC system mapped")
        if model not in MODELS:
            raise Unsupported(f"model {model!r} has no AIC model config mapped")
        if backend not in BACKENDS:
            raise Unsupported(f"backend {backend!r} (AIC knows {', '.join(BACKENDS)})")
        system = SYSTEMS[hardware]
        common = {
            "model_path": MODELS[model],
            "system_name": system,
            "backend_name": backend,
            "backend_version": self.version(system, backend),
            "isl": _int(row, "isl"),
            "osl": _int(row, "osl"),
            **quant_modes(model, row.get("precision", ""), backend),
        }
        moe = model in MOE_MODELS
        mode = row.get("mode", "")
        if mode == "agg":
            if kind == "max_throughput":
                return self._offline(row, common, moe)
            return self._agg(row, common, moe)
        if mode == "disagg":
            if kind == "max_throughput":
                raise Unsupported("max_throughput rows are priced for agg deployments only")
            return self._disagg(row, common, moe)
        raise Unsupported(f"mode {mode!r} (allowed: agg, disagg)")

    def _call(self, **kwargs: Any) -> Any:
        """``cli_estimate``; where the database has no fp8 context-attention (FMHA) data for
        the system/backend/layout, again with bfloat16 FMHA: AIC's own fallback for a
        checkpoint whose fp8 FMHA it cannot price."""
        try:
            return self._estimate(**kwargs)
        except Exception as exc:
            if kwargs.get("fmha_quant_mode") != "fp8" or not _no_fp8_fmha_data(exc):
                raise
        return self._estimate(**{**kwargs, "fmha_quant_mode": "bfloat16"})

    def _agg_call(
        self, common: Mapping[str, Any], par: Mapping[str, int | None], batch: int, ctx: int
    ) -> Any:
        return self._call(
            mode="agg",
            batch_size=batch,
            ctx_tokens=ctx,
            tp_size=par["tp"],
            attention_dp_size=par["dp"],
            moe_tp_size=par["moe_tp"],
            moe_ep_size=par["moe_ep"],
            **common,
        )

    def _agg(self, row: Mapping[str, str], common: Mapping[str, Any], moe: bool) -> dict[str, float]:
        par = _parallel(row, "", moe)
        workers, conc = _int(row, "workers", 1), _int(row, "concurrency")
        isl, osl = common["isl"], common["osl"]
        ranks = workers * int(par["dp"] or 1)
        batch = -(-conc // ranks)
        ctx = isl
        if self.agg_ctx == "budget" and batch > 1:  # the engines' budget, one decode request left
            ctx = TOKEN_BUDGET if isl >= TOKEN_BUDGET else min(TOKEN_BUDGET, isl * (batch - 1))
        result = self._agg_call(common, par, batch, ctx)
        raw = result.raw
        # seq/s covers one worker's attention-DP ranks at `batch` users each.
        rate = float(raw["seq/s"]) * workers * conc / (batch * ranks)
        gpus = workers * int(par["tp"] or 1) * int(par["dp"] or 1)
        return _metrics(float(result.ttft), float(result.tpot), rate, isl, osl, gpus, gpus)

    def _offline(self, row: Mapping[str, str], common: Mapping[str, Any], moe: bool) -> dict[str, float]:
        par = _parallel(row, "", moe)
        isl, osl = common["isl"], common["osl"]
        worker_gpus = int(par["tp"] or 1) * int(par["dp"] or 1)
        budgets = sorted({isl * 2**k for k in range(16) if isl * 2**k <= max(TOKEN_BUDGET, isl)})
        if isl < TOKEN_BUDGET:
            budgets = sorted({*budgets, TOKEN_BUDGET})
        best, errors = 0.0, []
        for ctx in budgets:
            for batch in BATCH_SCHEDULE:
                if batch == 1 and ctx != isl:
                    continue
                if batch > 1 and batch - math.ceil(ctx / isl) < 1:  # AIC: one decode request at least
                    continue
                try:
                    result = self._agg_call(common, par, batch, ctx)
                except Exception as exc:  # out of memory for this batch: larger ones are too
                    errors.append(exc)
                    break
                if result.kv_cache_warning:
                    break
                best = max(best, float(result.raw["seq/s"]) * osl / worker_gpus)
        if best <= 0:
            raise Unsupported(one_line(errors[0]) if errors else "no batch size fits")
        return {"pred_output_tok_s_gpu": best}

    def _disagg(self, row: Mapping[str, str], common: Mapping[str, Any], moe: bool) -> dict[str, float]:
        pre, dec = _parallel(row, "p_", moe), _parallel(row, "d_", moe)
        p_workers, d_workers = _int(row, "p_workers", 1), _int(row, "d_workers", 1)
        conc = _int(row, "concurrency")
        isl, osl = common["isl"], common["osl"]
        d_ranks = d_workers * int(dec["dp"] or 1)
        d_batch = -(-conc // d_ranks)
        result = self._call(
            mode="disagg",
            prefill_tp_size=pre["tp"],
            prefill_attention_dp_size=pre["dp"],
            prefill_moe_tp_size=pre["moe_tp"],
            prefill_moe_ep_size=pre["moe_ep"],
            prefill_batch_size=1,
            prefill_num_workers=p_workers,
            decode_tp_size=dec["tp"],
            decode_attention_dp_size=dec["dp"],
            decode_moe_tp_size=dec["moe_tp"],
            decode_moe_ep_size=dec["moe_ep"],
            decode_batch_size=d_batch,
            decode_num_workers=d_workers,
            **common,
        )
        raw = result.raw
        fill = conc / (d_batch * d_ranks)
        if fill < 1:  # fewer users than decode ranks x batch: decode supply shrinks
            prefill = float(raw["(p)seq/s/worker"]) * p_workers * self.rate_match[0]
            decode = float(raw["(d)seq/s/worker"]) * d_workers * self.rate_match[1] * fill
            rate = min(prefill, decode)
        else:
            rate = float(raw["seq/s"])
        p_gpus = p_workers * int(pre["tp"] or 1) * int(pre["dp"] or 1)
        d_gpus = d_workers * int(dec["tp"] or 1) * int(dec["dp"] or 1)
        return _metrics(float(result.ttft), float(result.tpot), rate, isl, osl, p_gpus + d_gpus, d_gpus)


def _metrics(
    ttft: float, tpot: float, rate: float, isl: int, osl: int, gpus: int, out_gpus: int
) -> dict[str, float]:
    return {
        "pred_ttft_ms": ttft,
        "pred_tpot_ms": tpot,
        "pred_tok_s_user": 1000.0 / tpot if tpot > 0 else math.nan,
        "pred_tok_s_gpu": rate * (isl + osl) / gpus,
        "pred_output_tok_s_gpu": rate * osl / out_gpus,
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


def write_rows(path: Path, rows: Iterable[Mapping[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=OUTPUT_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in OUTPUT_COLUMNS})


def _one_core() -> None:
    """Keep AIC (numpy, pyarrow, its Rust engine) on one CPU core."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if cpus:
            os.sched_setaffinity(0, {cpus[-1]})


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    default_csv = Path(__file__).resolve().parents[3] / "shared" / "fidelity" / "calibration.csv"
    default_out = Path(__file__).resolve().parents[2] / "docs" / "fidelity" / "aic_predictions.csv"
    parser.add_argument("--csv", type=Path, default=default_csv, help="points CSV (calibration.csv columns)")
    parser.add_argument("--out", type=Path, default=default_out, help="predictions CSV to write")
    parser.add_argument("--limit", type=int, default=0, help="price only the first N rows (0: all)")
    parser.add_argument(
        "--agg-ctx-tokens",
        choices=("isl", "budget"),
        default="isl",
        help="AIC ctx_tokens of agg load points: isl (AIC's cli estimate default, used for the "
        f"committed file) or the engines' {TOKEN_BUDGET}-token budget (a sensitivity check)",
    )
    args = parser.parse_args(argv)
    _one_core()
    logging.disable(logging.WARNING)  # AIC logs a warning per fallback table it loads
    try:
        pricer = AicPricer.from_aic()
    except ImportError as exc:
        print(f"aiconfigurator is not importable here ({exc}); pip install aiconfigurator==0.12.0")
        return 2
    pricer.agg_ctx = args.agg_ctx_tokens
    rows = read_rows(args.csv)
    if args.limit:
        rows = rows[: args.limit]
    out, start = [], time.perf_counter()
    for i, row in enumerate(rows, 1):
        out.append(pricer.price(row))
        if i % 10 == 0 or i == len(rows):
            print(f"\r{i}/{len(rows)} rows, {time.perf_counter() - start:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    write_rows(args.out, out)
    ok = sum(r["status"] == "ok" for r in out)
    print(f"wrote {args.out}: {ok}/{len(out)} rows priced in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
