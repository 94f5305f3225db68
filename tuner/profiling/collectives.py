"""All-reduce and all-to-all bandwidth between the GPUs of one node (torch.distributed).

One spawned process per GPU (``torch.multiprocessing.spawn``), NCCL over a loopback TCP
rendezvous. Each message size is warmed up, then timed with CUDA events around ``iters``
back-to-back collectives; the median per-collective time gives the *bus* bandwidth that
nccl-tests reports (all-reduce: ``bytes / t * 2 (n - 1) / n``; all-to-all:
``bytes / t * (n - 1) / n``), which is what the simulator's link model divides by. Message
sizes are those TP all-reduces carry (tokens x hidden x 2 bytes) and an EP dispatch sends.
The same code runs over gloo on the CPU, which the tests use to check the spawn path.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .measure import Point, require_torch

__all__ = ["measure_collectives"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_collectives(
    devices: list[int], sizes: tuple[int, ...], *, device: str = "cuda", iters: int = 20, warmup: int = 5
) -> list[Point]:
    """Bus bandwidth of all-reduce and all-to-all over ``devices`` (CUDA ordinals; on the
    CPU, ``len(devices)`` gloo ranks) at each message size in bytes."""
    torch = require_torch()
    world = len(devices)
    if world < 2:
        return []
    with tempfile.TemporaryDirectory(prefix="tuner-coll-") as tmp:
        out = Path(tmp) / "result.json"
        torch.multiprocessing.spawn(
            _worker,
            args=(devices, _free_port(), list(sizes), str(out), device, iters, warmup),
            nprocs=world,
            join=True,
        )
        points: list[Point] = json.loads(out.read_text())
    return points


def _worker(
    rank: int, devices: list[int], port: int, sizes: list[int], out: str, device: str, iters: int, warmup: int
) -> None:
    """One rank: time every size for both collectives; rank 0 writes the medians."""
    torch = require_torch()
    import torch.distributed as dist

    world = len(devices)
    os.environ.setdefault("NCCL_DEBUG", "WARN")
    if device == "cuda":
        torch.cuda.set_device(devices[rank])
    dist.init_process_group(
        "nccl" if device == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
    )
    try:
        points: list[Point] = []
        dev = f"cuda:{devices[rank]}" if device == "cuda" else "cpu"
        for size in sizes:
            numel = max(world, size // 2 // world * world)  # bf16, divisible for all-to-all
            x = torch.randn(numel, device=dev, dtype=torch.float32).to(torch.bfloat16)
            y = torch.empty_like(x)
            nbytes = numel * 2
            ar = _time(lambda x=x: dist.all_reduce(x), device, iters, warmup)
            points.append(
                {
                    "op": "all_reduce",
                    "ranks": world,
                    "bytes": nbytes,
                    "us": ar,
                    "bus_gb_s": nbytes / ar / 1e3 * 2 * (world - 1) / world,
                }
            )
            try:
                a2a = _time(lambda x=x, y=y: dist.all_to_all_single(y, x), device, iters, warmup)
            except RuntimeError:  # a backend without all-to-all (old gloo builds)
                continue
            points.append(
                {
                    "op": "all_to_all",
                    "ranks": world,
                    "bytes": nbytes,
                    "us": a2a,
                    "bus_gb_s": nbytes / a2a / 1e3 * (world - 1) / world,
                }
            )
        if rank == 0:
            Path(out).write_text(json.dumps(points))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _time(op: Any, device: str, iters: int, warmup: int) -> float:
    """Median microseconds of one collective (CUDA events per call on a GPU)."""
    torch = require_torch()
    import torch.distributed as dist

    for _ in range(warmup):
        op()
    if device != "cuda":
        times = []
        for _ in range(iters):
            dist.barrier()
            start = time.perf_counter()
            op()
            times.append((time.perf_counter() - start) * 1e6)
        return statistics.median(times)
    torch.cuda.synchronize()
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)
    ]
    for s, e in events:
        s.record()
        op()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1e3 for s, e in events)
