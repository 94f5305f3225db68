"""The profile document: headline figures from raw points, one entry per GPU type, YAML I/O.

The schema itself (:data:`serving.hardware_profile.PROFILE_SCHEMA`, version
:data:`SCHEMA_VERSION`) lives in ``serving`` because the simulator's loader reads it there;
this module builds documents that satisfy it and validates them before writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from serving import GPU
from serving.hardware_profile import PROFILE_KIND, SCHEMA_VERSION, validate_profile

from .measure import Point, fit_overhead

__all__ = ["PROFILE_KIND", "SCHEMA_VERSION", "build_entry", "dump_profile", "headline", "write_profile"]

#: Interconnect assumed for a GPU the catalog lacks, when nothing was measured: PCIe 4.0 x16
#: per direction (as the catalog's L40S) and one 200 Gb/s NIC per GPU (as its A100).
ASSUMED_PCIE_GB_S = 32.0
ASSUMED_IB_GB_S = 25.0


def _best(points: list[Point], key: str) -> float | None:
    values = [p[key] for p in points if p.get(key)]
    return max(values) if values else None


def headline(
    points: dict[str, list[Point]], *, sustained: dict[str, float | None]
) -> dict[str, float | None]:
    """The ``measured`` section from the raw points of one GPU type."""
    hbm = points.get("hbm", [])
    copy = [p for p in hbm if p["op"] == "copy"]
    read = [p for p in hbm if p["op"] == "read"]
    copy_tb_s = max(copy, key=lambda p: p["bytes"])["tb_s"] if copy else None
    read_tb_s = max(read, key=lambda p: p["bytes"])["tb_s"] if read else None
    small = [p for p in points.get("gemm", []) if p["dtype"] == "bf16" and p["m"] <= 16]
    overhead = stream = None
    if small and copy_tb_s:
        overhead, stream = fit_overhead(
            [p["bytes"] for p in small], [p["us"] for p in small], fallback_tb_s=copy_tb_s
        )
    prefill = [p for p in points.get("attention", []) if p["phase"] == "prefill"]
    prefill_tflops = None
    if prefill:
        longest = max(p["ctx"] for p in prefill)
        prefill_tflops = _best([p for p in prefill if p["ctx"] == longest], "tflops")
    decode = _fastest_per_shape([p for p in points.get("attention", []) if p["phase"] == "decode"])
    dec_overhead = dec_tb_s = None
    if decode and copy_tb_s:
        dec_overhead, dec_tb_s = fit_overhead(
            [p["kv_bytes"] for p in decode], [p["us"] for p in decode], fallback_tb_s=copy_tb_s
        )
    moe = points.get("moe", [])
    coll = points.get("collectives", [])
    ar = [p for p in coll if p["op"] == "all_reduce"]
    a2a = [p for p in coll if p["op"] == "all_to_all"]
    return {
        "hbm_copy_tb_s": copy_tb_s,
        "hbm_read_tb_s": read_tb_s,
        "gemm_bf16_tflops": sustained.get("bf16"),
        "gemm_fp8_tflops": sustained.get("fp8"),
        "gemm_overhead_us": overhead,
        "gemm_stream_tb_s": stream,
        "attn_prefill_tflops": prefill_tflops,
        "attn_decode_overhead_us": dec_overhead,
        "attn_decode_tb_s": dec_tb_s,
        "moe_grouped_tflops": max(moe, key=lambda p: p["tokens_per_expert"])["tflops"] if moe else None,
        "allreduce_bus_gb_s": max(ar, key=lambda p: p["bytes"])["bus_gb_s"] if ar else None,
        "all_to_all_bus_gb_s": max(a2a, key=lambda p: p["bytes"])["bus_gb_s"] if a2a else None,
        "collective_latency_us": min(ar, key=lambda p: p["bytes"])["us"] if ar else None,
    }


def _fastest_per_shape(points: list[Point]) -> list[Point]:
    """Decode points: the fastest SDPA backend per (batch, context), as an engine would pick."""
    best: dict[tuple[int, int], Point] = {}
    for p in points:
        key = (p["batch"], p["ctx"])
        if key not in best or p["us"] < best[key]["us"]:
            best[key] = p
    return list(best.values())


def build_entry(
    *,
    name: str,
    count: int,
    memory_gb: float,
    catalog: GPU | None,
    environment: dict[str, Any],
    measured: dict[str, float | None],
    points: dict[str, list[Point]],
) -> dict[str, Any]:
    """One ``gpus[]`` entry: datasheet from the catalog match (null when unknown), the
    interconnect (catalog, else measured all-reduce, else a stated assumption)."""
    if catalog is not None:
        datasheet = {
            "bf16_tflops": catalog.bf16_tflops,
            "fp8_tflops": catalog.fp8_tflops or None,
            "fp4_tflops": catalog.fp4_tflops or None,
            "hbm_tb_s": catalog.hbm_tb_s,
        }
        link = {
            "nvlink_domain": catalog.nvlink_domain,
            "nvlink_gb_s": catalog.nvlink_gb_s,
            "ib_gb_s": catalog.ib_gb_s,
            "source": "catalog",
        }
        environment = {"generation": catalog.generation, **environment}
    else:
        datasheet = {"bf16_tflops": None, "fp8_tflops": None, "fp4_tflops": None, "hbm_tb_s": None}
        bus = measured.get("allreduce_bus_gb_s")
        link = {
            "nvlink_domain": count if bus else 1,
            "nvlink_gb_s": bus or ASSUMED_PCIE_GB_S,
            "ib_gb_s": ASSUMED_IB_GB_S,
            "source": "assumed",
        }
    return {
        "name": name,
        "catalog_id": catalog.name if catalog is not None else None,
        "count": count,
        "memory_gb": round(memory_gb, 3),
        "environment": environment,
        "datasheet": datasheet,
        "interconnect": link,
        "measured": {k: _round(v) for k, v in measured.items()},
        "points": {
            k: [{f: _round(v) for f, v in p.items()} for p in pts] for k, pts in points.items() if pts
        },
    }


def _round(value: Any) -> Any:
    """Four significant digits: readable YAML, far below measurement noise."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


class _Dumper(yaml.SafeDumper):
    """Block style, except one raw point per line (``{op: copy, bytes: ..., us: ...}``)."""


class _Row(dict[str, Any]):
    """A raw point: dumped on one line."""


_Dumper.add_representer(
    _Row, lambda d, row: d.represent_mapping("tag:yaml.org,2002:map", row, flow_style=True)
)


def dump_profile(doc: dict[str, Any]) -> str:
    """YAML text of a profile, keys in document order, one raw point per line."""
    doc = dict(
        doc,
        gpus=[
            dict(e, points={k: [_Row(p) for p in pts] for k, pts in (e.get("points") or {}).items()})
            for e in doc["gpus"]
        ],
    )
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=200)


def write_profile(doc: dict[str, Any], path: str | Path) -> Path:
    """Validate ``doc`` against the schema, then write it to ``path`` (parents created)."""
    validate_profile(doc)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_HEADER + dump_profile(doc))
    return out


_HEADER = (
    "# Hardware profile written by `tuner profile` (schema: serving/hardware_profile.py).\n"
    "# Use: tuner tune SPEC --hardware-profile THIS_FILE   |   tuner profile --compare THIS_FILE\n"
    "# Units are in the field names. datasheet = peaks compared against (null: GPU not in the\n"
    "# catalog; fill them in to see fractions of peak); measured = what this node reached.\n"
)
