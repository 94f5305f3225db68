"""What a profiling run measures, scaled to its time budget and device.

Shapes are the serving layer shapes of h200.md section 2 (K, N of ``nn.Linear`` weights) and
the token counts M a scheduler step feeds them (1 .. 8192). The budget scales the number of
shapes, token counts, sizes and timed replays; each section also gets a deadline (its share
of the budget) after which its remaining points are skipped, so a run ends near its budget.
On the CPU everything shrinks (dimensions / 16, short contexts): that run checks an install.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GEMM_SHAPES", "SECTION_SHARES", "Plan", "make_plan"]

#: (label, K, N): bf16 weights of real layers, per GPU (h200.md section 2).
GEMM_SHAPES: tuple[tuple[str, int, int], ...] = (
    ("8B gate_up", 4096, 28672),
    ("70B/TP8 qkv", 8192, 1280),
    ("8B down", 14336, 4096),
    ("8B qkv", 4096, 6144),
    ("70B/TP8 gate_up", 8192, 7168),
    ("8B o", 4096, 4096),
    ("70B/TP8 down", 3584, 8192),
    ("Qwen3-32B/TP2 gate_up", 5120, 25600),
)
_M_ALL = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_M_FEW = (1, 4, 16, 64, 256, 1024, 4096)

#: Share of the budget of each section (collectives only with >= 2 GPUs of a type).
SECTION_SHARES = {
    "hbm": 0.06,
    "gemm_bf16": 0.30,
    "gemm_fp8": 0.18,
    "attention": 0.18,
    "moe": 0.10,
    "collectives": 0.18,
}

MiB = 1 << 20


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one profiling run."""

    device: str
    budget_s: float
    replays: int
    warmup: int
    target_ms: float
    rotate_bytes: float
    hbm_bytes: tuple[int, ...]
    gemm_shapes: tuple[tuple[str, int, int], ...]
    gemm_m: tuple[int, ...]
    sustain_size: int
    sustain_s: float
    attn_heads: tuple[int, int, int]  # query heads, KV heads, head dim
    prefill_ctx: tuple[int, ...]
    decode_points: tuple[tuple[int, int], ...]  # (batch, context)
    moe: tuple[int, int, int]  # local experts, K, N
    moe_tokens: tuple[int, ...]
    collective_bytes: tuple[int, ...]
    shares: dict[str, float] = field(default_factory=lambda: dict(SECTION_SHARES))


def make_plan(budget_s: float, device: str, *, memory_bytes: float = 0.0) -> Plan:
    """The plan for ``budget_s`` seconds on ``device``; ``memory_bytes`` caps buffer sizes."""
    if device == "cpu":
        return _cpu_plan(budget_s)
    scale = budget_s / 120.0  # 120 s: every shape and M at 20 replays
    big = scale >= 0.75
    cap = memory_bytes / 8 if memory_bytes else 4096 * MiB
    hbm = tuple(s for s in (256 * MiB, 1024 * MiB, 4096 * MiB if big else 0) if 0 < s <= cap)
    return Plan(
        device=device,
        budget_s=budget_s,
        replays=20 if big else 10,
        warmup=3,
        target_ms=2.0,
        rotate_bytes=512 * MiB,  # >= 8x a Hopper/Blackwell L2 (50-126 MB)
        hbm_bytes=hbm or (64 * MiB,),
        gemm_shapes=GEMM_SHAPES if big else GEMM_SHAPES[:4],
        gemm_m=_M_ALL if big else _M_FEW,
        sustain_size=8192,
        sustain_s=min(8.0, max(2.0, 0.05 * budget_s)),
        attn_heads=(32, 8, 128),
        prefill_ctx=(1024, 2048, 4096, 8192) if big else (1024, 4096, 8192),
        decode_points=tuple(
            (b, L)
            for b in ((1, 16, 64, 256) if big else (1, 16, 64))
            for L in (1024, 4096, 8192)
            if 2 * b * 8 * L * 128 * 2 <= cap
        ),
        moe=(8, 7168, 4096),  # DeepSeek-V3 at EP32: 8 local experts, gate_up of 2048
        moe_tokens=(1, 4, 16, 64, 128, 256, 1024) if big else (1, 16, 128, 1024),
        # TP all-reduce of M tokens x hidden 8192 x 2 bytes, M = 1 .. 8192 (16 KiB .. 128 MiB).
        collective_bytes=tuple(m * 8192 * 2 for m in ((1, 16, 128, 1024, 8192) if big else (1, 128, 8192))),
    )


def _cpu_plan(budget_s: float) -> Plan:
    """Small sizes: seconds on two cores; the figures check an install, nothing more."""
    short = budget_s < 20
    return Plan(
        device="cpu",
        budget_s=budget_s,
        replays=5 if short else 9,
        warmup=1,
        target_ms=1.0,
        rotate_bytes=32 * MiB,
        hbm_bytes=(32 * MiB,) if short else (16 * MiB, 64 * MiB),
        gemm_shapes=tuple((label, k // 16, n // 16) for label, k, n in GEMM_SHAPES[: 2 if short else 4]),
        gemm_m=(1, 4, 16, 64) if short else (1, 4, 16, 64, 256),
        sustain_size=256 if short else 512,
        sustain_s=0.2 if short else 1.0,
        attn_heads=(8, 2, 64),
        prefill_ctx=(128, 256) if short else (128, 512, 1024),
        decode_points=((1, 256), (4, 1024)) if short else ((1, 256), (1, 1024), (8, 1024), (8, 4096)),
        moe=(4, 512, 256),
        moe_tokens=(1, 16, 64) if short else (1, 16, 128, 512),
        collective_bytes=(16 * 1024, 1024 * 1024),
    )
