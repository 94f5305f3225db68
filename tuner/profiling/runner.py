"""Run a profile: every section on every GPU type, within the time budget, into a document.

Sections run in the order of h200.md's main run (hbm, GEMM bf16, fp8, attention, MoE) and
then collectives; the sustained GEMMs run right after their sweep so the card is hot. Each
section has a deadline (its share of the budget); points past it are skipped and counted in
the document's notes, so the run's wall time stays near the budget.
"""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from .. import __version__
from .collectives import measure_collectives
from .device import DeviceType, catalog_match, nvml_snapshot
from .measure import (
    Point,
    Timer,
    attention_decode,
    attention_prefill,
    gemm,
    grouped_gemm,
    hbm,
    require_torch,
    sustained_gemm,
)
from .plan import Plan
from .schema import PROFILE_KIND, SCHEMA_VERSION, build_entry, headline

__all__ = ["ProfileRun", "has_fp8", "planned_points", "run_profile"]

#: progress(section, points done in this section, points planned there)
Progress = Callable[[str, int, int], None]
#: One point (or a few, e.g. one per attention backend) of a section.
Thunk = Callable[[Timer], list[Point]]


@dataclass
class ProfileRun:
    """Raw points and bookkeeping of one GPU type's run."""

    points: dict[str, list[Point]] = field(default_factory=dict)
    sustained: dict[str, float | None] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def has_fp8(dev: DeviceType) -> bool:
    """fp8 tensor cores: compute capability >= 8.9 (Ada, Hopper, Blackwell)."""
    if dev.device != "cuda":
        return False
    major, minor = (int(x) for x in str(dev.environment.get("compute_capability", "0.0")).split("."))
    return (major, minor) >= (8, 9)


def _gemm_point(timer: Timer, **kw: Any) -> list[Point]:
    return [gemm(timer, **kw)]


def _moe_point(timer: Timer, **kw: Any) -> list[Point]:
    return [grouped_gemm(timer, **kw)]


def _sections(plan: Plan, dev: DeviceType) -> dict[str, list[Thunk]]:
    """Section -> its point thunks, in run order."""
    qh, kvh, hd = plan.attn_heads
    e, mk, mn = plan.moe
    r = plan.rotate_bytes

    def gemms(dtype: str) -> list[Thunk]:
        return [
            partial(_gemm_point, m=m, k=k, n=n, dtype=dtype, rotate_bytes=r, shape=s)
            for s, k, n in plan.gemm_shapes
            for m in plan.gemm_m
        ]

    attention: list[Thunk] = [
        partial(attention_prefill, seq=s, heads=qh, kv_heads=kvh, head_dim=hd) for s in plan.prefill_ctx
    ]
    attention += [
        partial(attention_decode, batch=b, ctx=L, heads=qh, kv_heads=kvh, head_dim=hd, rotate_bytes=r)
        for b, L in plan.decode_points
    ]
    return {
        "hbm": [partial(hbm, size_bytes=b) for b in plan.hbm_bytes],
        "gemm_bf16": gemms("bf16"),
        "gemm_fp8": gemms("fp8") if has_fp8(dev) else [],
        "attention": attention,
        "moe": [
            partial(_moe_point, experts=e, tokens=n, k=mk, n=mn, rotate_bytes=r) for n in plan.moe_tokens
        ],
    }


def planned_points(plan: Plan, dev: DeviceType) -> dict[str, int]:
    """Points each section plans (for the progress bar)."""
    out = {name: len(thunks) for name, thunks in _sections(plan, dev).items()}
    out["collectives"] = len(plan.collective_bytes) if len(dev.ordinals) > 1 and dev.device == "cuda" else 0
    return out


def _run_section(
    name: str, thunks: list[Thunk], timer: Timer, deadline: float, run: ProfileRun, progress: Progress
) -> None:
    pts: list[Point] = run.points.setdefault(name.split("_")[0] if name.startswith("gemm") else name, [])
    for i, thunk in enumerate(thunks):
        if time.monotonic() > deadline:
            run.skipped[name] = len(thunks) - i
            break
        try:
            pts.extend(thunk(timer))
        except (RuntimeError, MemoryError) as exc:  # OOM or a missing kernel: data, not a crash
            run.notes.append(f"{name}: a point failed ({str(exc).splitlines()[0][:120]})")
        _release()
        progress(name, i + 1, len(thunks))


def _release() -> None:
    torch = require_torch()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def profile_type(plan: Plan, dev: DeviceType, *, start: float, progress: Progress) -> ProfileRun:
    """Measure one device type on its first device (collectives over all of them)."""
    torch = require_torch()
    if dev.device == "cuda":
        torch.cuda.set_device(dev.ordinals[0])
    else:
        # One thread: OpenMP workers that lose their core on a shared machine turn each
        # launch into a scheduler quantum (10-16 ms seen on 2 busy cores); one is repeatable.
        torch.set_num_threads(1)
        dev.environment["threads"] = 1
    run = ProfileRun()
    timer = Timer(dev.device, replays=plan.replays, warmup=plan.warmup, target_ms=plan.target_ms)
    shares = dict(plan.shares)
    if len(dev.ordinals) < 2 or dev.device != "cuda":
        shares.pop("collectives")
    total = sum(shares.values())
    deadline = start
    for name, thunks in _sections(plan, dev).items():
        deadline += plan.budget_s * shares[name] / total
        _run_section(name, thunks, timer, deadline, run, progress)
        if name.startswith("gemm_") and thunks:
            _sustain(plan, dev, timer, name.removeprefix("gemm_"), run)
    if "collectives" in shares:
        run.points["collectives"] = measure_collectives(dev.ordinals, plan.collective_bytes)
        progress("collectives", len(plan.collective_bytes), len(plan.collective_bytes))
    return run


def _sustain(plan: Plan, dev: DeviceType, timer: Timer, dtype: str, run: ProfileRun) -> None:
    sustain = Timer(dev.device, replays=plan.replays, warmup=plan.warmup, target_ms=max(plan.target_ms, 20.0))
    try:
        tflops, pts = sustained_gemm(sustain, size=plan.sustain_size, dtype=dtype, seconds=plan.sustain_s)
    except RuntimeError as exc:
        run.notes.append(f"sustained {dtype} GEMM failed ({str(exc).splitlines()[0][:120]})")
        return
    run.sustained[dtype] = tflops
    run.points.setdefault("sustained", []).extend(pts)
    if dev.device == "cuda":  # clocks and power while the card is hot
        dev.environment.update({f"{k}_{dtype}": v for k, v in nvml_snapshot(dev.ordinals[0]).items()})


def run_profile(plan: Plan, devices: Iterable[DeviceType], *, progress: Progress) -> dict[str, Any]:
    """Measure every device type and return the profile document (not yet validated)."""
    torch = require_torch()
    began, wall = time.monotonic(), datetime.now(UTC)
    entries, notes = [], []
    for dev in devices:
        run = profile_type(plan, dev, start=time.monotonic(), progress=progress)
        catalog = catalog_match(dev.name, dev.memory_gb) if dev.device == "cuda" else None
        entries.append(
            build_entry(
                name=dev.name,
                count=len(dev.ordinals),
                memory_gb=dev.memory_gb,
                catalog=catalog,
                environment=dev.environment,
                measured=headline(run.points, sustained=run.sustained),
                points=run.points,
            )
        )
        notes += [f"{dev.name}: {n}" for n in run.notes]
        notes += [f"{dev.name}: {name}: {n} points skipped (budget)" for name, n in run.skipped.items()]
        if catalog is None and dev.device == "cuda":
            notes.append(
                f"{dev.name}: not in the catalog; datasheet peaks unknown (fill them in for "
                "--compare); interconnect assumed where not measured, ib_gb_s always"
            )
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": PROFILE_KIND,
        "device": plan.device,
        "created_utc": wall.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(),
        "budget_s": plan.budget_s,
        "elapsed_s": round(time.monotonic() - began, 1),
        "software": {
            "tuner": __version__,
            "torch": str(torch.__version__),
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
        },
        "notes": notes,
        "gpus": entries,
    }
    if plan.device == "cpu":
        doc["notes"].insert(0, "CPU figures from small sizes: an install check, never usable as a GPU")
    return doc
