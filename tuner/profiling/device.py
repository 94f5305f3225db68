"""The devices a profile measures: GPU types, their environment, their catalog entry.

Environment figures (driver, power limit, clocks, throttle reasons) come from NVML through
``pynvml`` (the ``nvidia-ml-py`` package) when it is installed, else from torch and
``/proc/driver/nvidia/version``; a missing figure is recorded as null, never guessed.
"""

from __future__ import annotations

import logging
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving import GPU, load_gpu
from serving.catalog import gpu_names

from .measure import require_torch

__all__ = ["DeviceType", "catalog_match", "cpu_type", "cuda_types", "nvml_snapshot"]

log = logging.getLogger(__name__)

#: Throttle-reason bits of nvmlDeviceGetCurrentClocksEventReasons (nvml.h).
_THROTTLE = {
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
}


@dataclass
class DeviceType:
    """One GPU type of the node (or the CPU): its devices and what is known about it."""

    name: str
    device: str  # "cuda" | "cpu"
    ordinals: list[int]
    memory_gb: float
    environment: dict[str, Any] = field(default_factory=dict)


def cuda_types() -> list[DeviceType]:
    """Visible CUDA devices grouped by name (one profile entry per GPU type)."""
    torch = require_torch()
    types: dict[str, DeviceType] = {}
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        entry = types.get(props.name)
        if entry is None:
            env = {
                "compute_capability": f"{props.major}.{props.minor}",
                "sm_count": props.multi_processor_count,
                "cuda": torch.version.cuda,
                "driver": _driver_from_proc(),
            }
            env.update(nvml_snapshot(i, static=True))
            types[props.name] = DeviceType(props.name, "cuda", [i], props.total_memory / 1e9, env)
        else:
            entry.ordinals.append(i)
    return list(types.values())


def cpu_type() -> DeviceType:
    """The CPU as a device (for install checks only)."""
    torch = require_torch()
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        name = found.group(1).strip() if found else name
    try:
        mem = Path("/proc/meminfo").read_text().split()[1]
        memory_gb = int(mem) * 1024 / 1e9
    except (OSError, IndexError, ValueError):
        memory_gb = 1.0
    return DeviceType(f"CPU {name}", "cpu", [0], memory_gb, {"threads": torch.get_num_threads()})


def _driver_from_proc() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    if not path.is_file():
        return None
    found = re.search(r"Kernel Module\s+(\S+)", path.read_text())
    return found.group(1) if found else None


def nvml_snapshot(index: int, *, static: bool = False) -> dict[str, Any]:
    """NVML figures of GPU ``index``: limits and max clocks (``static``) or the current
    clocks, power and throttle reasons (after a load). Empty without pynvml."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        if static:
            return {
                "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
                "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
                "sm_clock_max_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
                "mem_clock_max_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
            }
        reasons = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        return {
            "sm_clock_load_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "power_load_w": pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "temperature_load_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            "throttle_load": ",".join(n for bit, n in _THROTTLE.items() if reasons & bit) or "none",
        }
    except pynvml.NVMLError as exc:  # e.g. a VM without NVML access: record nothing
        log.warning("NVML unavailable for GPU %d: %s", index, exc)
        return {}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def catalog_match(name: str, memory_gb: float) -> GPU | None:
    """The catalog GPU a device name denotes ("NVIDIA H200" -> h200_sxm), or None.

    The longest catalog alias found as a word in the name wins; PCIe parts never match SXM
    entries, and a memory size more than 25% off the entry's rules the match out (A100 40GB).
    """
    text = name.upper().replace("NVIDIA", " ")
    best: tuple[int, GPU] | None = None
    for key in gpu_names():
        gpu = load_gpu(key)
        for alias in _aliases(key):
            if re.search(rf"(^|[\s_-]){re.escape(alias.upper())}($|[\s_-])", text) is None:
                continue
            if "PCIE" in text and "PCIE" not in alias.upper():
                continue
            if abs(memory_gb - gpu.hbm_gb) > 0.25 * gpu.hbm_gb:
                continue
            if best is None or len(alias) > best[0]:
                best = (len(alias), gpu)
    return best[1] if best else None


def _aliases(key: str) -> list[str]:
    from serving.catalog import _table  # the raw entry: its aliases are not on GPU

    entry = _table("gpus.yaml")[key]
    return [key, str(entry.get("name", "")), *map(str, entry.get("aliases", []))]
