"""Kernel timers and the kernels a serving step is made of, measured with torch.

Method (shared/fidelity/kernels/h200.md, "Method"): on a GPU each point is a CUDA graph of R
launches, R sized so one replay lasts at least ``target_ms``; a few warm-up replays, then the
**median** of timed replays (CUDA events around each replay) divided by R. Launches rotate
over copies of the weights / KV / sources so the rotated footprint dwarfs L2
(``rotate_bytes``); activations stay a single buffer, as in a layer chain. Inputs are
``randn``, never zeros. Bandwidth is measured with a copy *kernel* (``torch.neg(out=)``): a
``copy_`` captured in a graph becomes a memcpy node that runs at ~60% of HBM (h200.md takeaway 8).
On the CPU the same code runs eagerly, timed with ``perf_counter``, on small sizes.

torch is imported lazily (:func:`require_torch`) so the rest of the tuner works without it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TunerError

__all__ = [
    "Point",
    "Timer",
    "attention_decode",
    "attention_prefill",
    "copies_for",
    "fit_overhead",
    "gemm",
    "grouped_gemm",
    "hbm",
    "require_torch",
    "sustained_gemm",
]

#: One measured point: plain numbers/strings with units in the keys.
Point = dict[str, Any]


def require_torch() -> Any:
    """The torch module, or a TunerError naming the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise TunerError(
            "tuner profile measures with PyTorch, which is not installed: "
            "pip install -e '.[profile]' from the repository (or pip install torch)"
        ) from None
    return torch


@dataclass
class Timer:
    """Median time of one kernel launch on ``device`` ("cuda" or "cpu")."""

    device: str
    replays: int = 20
    warmup: int = 3
    target_ms: float = 2.0
    use_graphs: bool = True

    def median_us(self, launch: Callable[[int], object]) -> float:
        """Median microseconds of one launch; ``launch(i)`` runs launch number i (rotate by i)."""
        return statistics.median(self.series_us(launch, self.replays))

    def series_us(self, launch: Callable[[int], object], replays: int) -> list[float]:
        """Per-launch microseconds of ``replays`` timed replays, in order."""
        if self.device == "cuda":
            return self._cuda(launch, replays)
        return self._cpu(launch, replays)

    def _cpu(self, launch: Callable[[int], object], replays: int) -> list[float]:
        launch(0)  # first-call costs: allocation, kernel selection
        start = time.perf_counter()
        launch(1)
        once = max(time.perf_counter() - start, 1e-7)
        reps = max(1, min(10_000, math.ceil(self.target_ms * 1e-3 / once)))
        for _ in range(self.warmup):
            for i in range(reps):
                launch(i)
        out = []
        for _ in range(replays):
            start = time.perf_counter()
            for i in range(reps):
                launch(i)
            out.append((time.perf_counter() - start) * 1e6 / reps)
        return out

    def _cuda(self, launch: Callable[[int], object], replays: int) -> list[float]:
        torch = require_torch()
        for i in range(3):  # eager warm-up: cuBLAS heuristics, workspaces, lazy modules
            launch(i)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(3):
            launch(i)
        end.record()
        end.synchronize()
        once_ms = max(start.elapsed_time(end) / 3, 1e-4)
        reps = max(1, min(2000, math.ceil(self.target_ms / once_ms)))
        run = self._graph(launch, reps) if self.use_graphs else None
        if run is None:  # not capturable: eager launches (adds launch gaps of a few us)

            def run() -> None:
                for i in range(reps):
                    launch(i)

        for _ in range(self.warmup):
            run()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(replays)
        ]
        for s, e in events:
            s.record()
            run()
            e.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1e3 / reps for s, e in events]

    @staticmethod
    def _graph(launch: Callable[[int], object], reps: int) -> Callable[[], None] | None:
        torch = require_torch()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                for i in range(reps):
                    launch(i)
        except RuntimeError:
            torch.cuda.synchronize()
            return None
        replay: Callable[[], None] = graph.replay
        return replay


def copies_for(one_bytes: float, rotate_bytes: float, *, limit: int = 64) -> int:
    """How many copies of a buffer keep the rotated footprint >= ``rotate_bytes``."""
    return max(1, min(limit, math.ceil(rotate_bytes / max(one_bytes, 1.0))))


def _rand(shape: tuple[int, ...], dtype: Any, device: str) -> Any:
    torch = require_torch()
    return torch.randn(shape, device=device, dtype=torch.float32).to(dtype)


# -- HBM --------------------------------------------------------------------------------------
def hbm(timer: Timer, size_bytes: int) -> list[Point]:
    """Copy (read + write, ``torch.neg`` into a second buffer) and read (``sum``) bandwidth."""
    torch = require_torch()
    n = size_bytes // 2
    src = _rand((n,), torch.bfloat16, timer.device)
    dst = torch.empty_like(src)
    copy_us = timer.median_us(lambda i: torch.neg(src, out=dst))
    read_us = timer.median_us(lambda i: src.sum())
    return [
        {"op": "copy", "bytes": size_bytes, "us": copy_us, "tb_s": 2 * size_bytes / copy_us / 1e6},
        {"op": "read", "bytes": size_bytes, "us": read_us, "tb_s": size_bytes / read_us / 1e6},
    ]


# -- GEMMs -------------------------------------------------------------------------------------
def _fp8(torch: Any) -> Any:
    return torch.float8_e4m3fn


def gemm(timer: Timer, *, m: int, k: int, n: int, dtype: str, rotate_bytes: float, shape: str = "") -> Point:
    """``x @ W.t()`` with W in the ``nn.Linear`` layout (N, K), W rotated past L2; bf16 output.

    fp8: e4m3 operands with per-tensor fp32 scales of 1.0 through ``torch._scaled_mm`` (the
    activation quantisation is not timed, as in h200.md).
    """
    torch = require_torch()
    dev = timer.device
    wb = 1 if dtype == "fp8" else 2
    copies = copies_for(n * k * wb, rotate_bytes)
    if dtype == "fp8":
        f8 = _fp8(torch)
        ws = [_rand((n, k), torch.bfloat16, dev).to(f8) for _ in range(copies)]
        x = _rand((m, k), torch.bfloat16, dev).to(f8)
        one = torch.ones((), device=dev, dtype=torch.float32)

        def launch(i: int) -> object:
            return torch._scaled_mm(
                x, ws[i % copies].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True
            )
    else:
        ws = [_rand((n, k), torch.bfloat16, dev) for _ in range(copies)]
        x = _rand((m, k), torch.bfloat16, dev)
        y = torch.empty((m, n), device=dev, dtype=torch.bfloat16)

        def launch(i: int) -> object:
            return torch.mm(x, ws[i % copies].t(), out=y)

    us = timer.median_us(launch)
    moved = (n * k + m * k) * wb + m * n * 2
    return {
        "dtype": dtype,
        "shape": shape,
        "m": m,
        "k": k,
        "n": n,
        "us": us,
        "tflops": 2.0 * m * n * k / us / 1e6,
        "tb_s": moved / us / 1e6,
        "bytes": moved,
    }


def sustained_gemm(timer: Timer, *, size: int, dtype: str, seconds: float) -> tuple[float, list[Point]]:
    """Square ``size``^3 GEMM run back to back for about ``seconds``: the power-capped rate a
    busy serving GPU holds (h200.md section 1: a cold card's first ms read ~20% high).
    Returns the median TFLOPS of the second half and a few points of the series."""
    torch = require_torch()
    dev = timer.device
    a = _rand((size, size), torch.bfloat16, dev)
    b = _rand((size, size), torch.bfloat16, dev)
    if dtype == "fp8":
        a, b = a.to(_fp8(torch)), b.to(_fp8(torch))
        one = torch.ones((), device=dev, dtype=torch.float32)

        def launch(i: int) -> object:
            return torch._scaled_mm(
                a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True
            )
    else:
        c = torch.empty((size, size), device=dev, dtype=torch.bfloat16)

        def launch(i: int) -> object:
            return torch.mm(a, b.t(), out=c)

    flops = 2.0 * size**3
    first = timer.series_us(launch, 2)
    per_replay_s = max(timer.target_ms * 1e-3, statistics.median(first) * 1e-6)  # R launches >= target
    series = timer.series_us(launch, max(4, int(seconds / per_replay_s)))
    tail = series[len(series) // 2 :]
    tflops = flops / statistics.median(tail) / 1e6
    marks = sorted({0, len(series) // 4, len(series) // 2, len(series) - 1})
    pts = [
        {
            "dtype": dtype,
            "m": size,
            "k": size,
            "n": size,
            "replay": i,
            "us": series[i],
            "tflops": flops / series[i] / 1e6,
        }
        for i in marks
    ]
    return tflops, pts


def grouped_gemm(timer: Timer, *, experts: int, tokens: int, k: int, n: int, rotate_bytes: float) -> Point:
    """MoE-like grouped GEMM: ``bmm`` of (E, T, K) tokens by (E, K, N) expert weights, even load."""
    torch = require_torch()
    dev = timer.device
    copies = copies_for(experts * k * n * 2, rotate_bytes)
    ws = [_rand((experts, k, n), torch.bfloat16, dev) for _ in range(copies)]
    x = _rand((experts, tokens, k), torch.bfloat16, dev)
    y = torch.empty((experts, tokens, n), device=dev, dtype=torch.bfloat16)
    us = timer.median_us(lambda i: torch.bmm(x, ws[i % copies], out=y))
    flops = 2.0 * experts * tokens * k * n
    moved = experts * (k * n + tokens * k + tokens * n) * 2
    return {
        "experts": experts,
        "tokens_per_expert": tokens,
        "k": k,
        "n": n,
        "us": us,
        "tflops": flops / us / 1e6,
        "tb_s": moved / us / 1e6,
    }


# -- attention ----------------------------------------------------------------------------------
def _backends(device: str) -> Iterator[tuple[str, Any]]:
    """SDPA backends worth timing: on a GPU each fused kernel (cuDNN is ~2x PyTorch's FA2 on
    Hopper, h200.md takeaway 5), on the CPU the default dispatch."""
    from torch.nn.attention import SDPBackend

    if device != "cuda":
        yield "default", None
        return
    yield "cudnn", SDPBackend.CUDNN_ATTENTION
    yield "flash", SDPBackend.FLASH_ATTENTION
    yield "efficient", SDPBackend.EFFICIENT_ATTENTION


def _sdpa(q: Any, k: Any, v: Any, backend: Any, *, causal: bool) -> Any:
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)


def attention_prefill(timer: Timer, *, seq: int, heads: int, kv_heads: int, head_dim: int) -> list[Point]:
    """Causal prefill attention, batch 1, GQA; one point per SDPA backend that runs it.
    FLOPs = 4 * H * S^2 * d / 2 (causal half)."""
    torch = require_torch()
    dev = timer.device
    q = _rand((1, heads, seq, head_dim), torch.bfloat16, dev)
    k = _rand((1, kv_heads, seq, head_dim), torch.bfloat16, dev)
    v = _rand((1, kv_heads, seq, head_dim), torch.bfloat16, dev)
    flops = 4.0 * heads * seq * seq * head_dim / 2
    out: list[Point] = []
    for name, backend in _backends(dev):
        try:

            def launch(i: int, b: Any = backend) -> object:
                return _sdpa(q, k, v, b, causal=True)

            us = timer.median_us(launch)
        except RuntimeError:  # backend has no kernel for this shape/GPU (e.g. no GQA path)
            continue
        out.append(
            {
                "phase": "prefill",
                "backend": name,
                "batch": 1,
                "ctx": seq,
                "heads": heads,
                "kv_heads": kv_heads,
                "head_dim": head_dim,
                "us": us,
                "tflops": flops / us / 1e6,
            }
        )
    return out


def attention_decode(
    timer: Timer, *, batch: int, ctx: int, heads: int, kv_heads: int, head_dim: int, rotate_bytes: float
) -> list[Point]:
    """Decode attention (one query token per sequence) over ``ctx`` cached tokens; dense KV
    rotated past L2. KV bytes = 2 * B * KVH * L * d * 2."""
    torch = require_torch()
    dev = timer.device
    kv_bytes = 2 * batch * kv_heads * ctx * head_dim * 2
    copies = copies_for(kv_bytes, rotate_bytes, limit=16)
    q = _rand((batch, heads, 1, head_dim), torch.bfloat16, dev)
    kvs = [
        (
            _rand((batch, kv_heads, ctx, head_dim), torch.bfloat16, dev),
            _rand((batch, kv_heads, ctx, head_dim), torch.bfloat16, dev),
        )
        for _ in range(copies)
    ]
    out: list[Point] = []
    for name, backend in _backends(dev):
        try:

            def launch(i: int, b: Any = backend) -> object:
                kc, vc = kvs[i % copies]
                return _sdpa(q, kc, vc, b, causal=False)

            us = timer.median_us(launch)
        except RuntimeError:
            continue
        out.append(
            {
                "phase": "decode",
                "backend": name,
                "batch": batch,
                "ctx": ctx,
                "heads": heads,
                "kv_heads": kv_heads,
                "head_dim": head_dim,
                "us": us,
                "kv_bytes": kv_bytes,
                "tb_s": kv_bytes / us / 1e6,
            }
        )
    return out


# -- fits ----------------------------------------------------------------------------------------
def fit_overhead(bytes_moved: list[float], us: list[float], *, fallback_tb_s: float) -> tuple[float, float]:
    """Least-squares ``t = overhead_us + bytes / bandwidth`` -> (overhead_us, TB/s).

    The h200.md fits (GEMMs with M <= 16; decode attention). When the points cannot support a
    two-parameter fit (one size only, or noise gives a negative slope/intercept) the bandwidth
    is fixed at ``fallback_tb_s`` (the measured copy bandwidth) and only the overhead is fitted.
    """
    x = np.asarray(bytes_moved, dtype=float)
    t = np.asarray(us, dtype=float)
    if len(x) >= 3 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, t, 1)
        if slope > 0 and intercept >= 0:
            return float(intercept), float(1.0 / slope / 1e6)
    overhead = float(np.median(t - x / (fallback_tb_s * 1e6)))
    return max(overhead, 0.0), fallback_tb_s
