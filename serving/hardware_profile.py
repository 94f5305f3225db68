"""Hardware profiles: measured GPU figures (``tuner profile``) read back as :class:`GPU` records.

A profile is a YAML document, versioned (``schema_version``) and checked against
:data:`PROFILE_SCHEMA` (JSON Schema, draft 2020-12) with ``jsonschema``. Units are in the
field names (``hbm_copy_tb_s``, ``gemm_bf16_tflops``, ``gemm_overhead_us``). One profile holds
one entry per GPU type of the node. An entry carries the datasheet peaks it is compared with
(copied from the catalog for a known GPU, ``null`` for an unknown one), the interconnect the
simulator prices collectives with, and the ``measured`` headline figures; ``points`` keeps the
raw medians for inspection.

:func:`load_profile_gpu` turns one entry into a :class:`GPU` whose optional ``measured_*``
fields replace the simulator's "datasheet x fitted fraction": an unknown GPU becomes usable,
a known one more exact. A ``device: cpu`` profile (written only on explicit request, to check
an install) is refused here: CPU figures never stand in for a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .catalog import load_gpu
from .errors import ConfigError, TunerError
from .hardware import GPU
from .inputs import read_yaml

__all__ = [
    "MEASURED_KEYS",
    "PROFILE_KIND",
    "PROFILE_SCHEMA",
    "SCHEMA_VERSION",
    "entry_matches",
    "gpu_from_entry",
    "load_profile",
    "load_profile_gpu",
    "select_entry",
    "validate_profile",
]

#: Bumped when a field changes meaning or a required field is added.
SCHEMA_VERSION = 1
PROFILE_KIND = "tuner-hardware-profile"

_POS = {"type": "number", "exclusiveMinimum": 0}
_POS_OR_NULL = {"type": ["number", "null"], "exclusiveMinimum": 0}
_NONNEG_OR_NULL = {"type": ["number", "null"], "minimum": 0}

#: Headline figures of one GPU type (``gpus[i].measured``); ``null`` = not measured.
MEASURED_KEYS: dict[str, dict[str, Any]] = {
    "hbm_copy_tb_s": _POS,  # read + write bytes / time of a copy kernel, largest buffer
    "hbm_read_tb_s": _POS,  # bytes / time of a sum over a buffer
    "gemm_bf16_tflops": _POS,  # sustained (seconds of back-to-back) large bf16 GEMM
    "gemm_fp8_tflops": _POS_OR_NULL,  # the same with torch._scaled_mm e4m3; null: no fp8
    "gemm_overhead_us": _NONNEG_OR_NULL,  # fit t = overhead + bytes / stream over M <= 16
    "gemm_stream_tb_s": _POS_OR_NULL,  # the bandwidth of that fit
    "attn_prefill_tflops": _POS_OR_NULL,  # causal SDPA, batch 1, longest context measured
    "attn_decode_overhead_us": _NONNEG_OR_NULL,  # fit t = overhead + KV bytes / bandwidth
    "attn_decode_tb_s": _POS_OR_NULL,
    "moe_grouped_tflops": _POS_OR_NULL,  # bmm over local experts, most tokens per expert
    "allreduce_bus_gb_s": _POS_OR_NULL,  # NCCL bus bandwidth, largest TP message; null: 1 GPU
    "all_to_all_bus_gb_s": _POS_OR_NULL,  # NCCL all-to-all bus bandwidth, largest EP message
    "collective_latency_us": _NONNEG_OR_NULL,  # smallest all-reduce
}

_POINT = {"type": "object", "additionalProperties": {"type": ["number", "string", "integer", "null"]}}

PROFILE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tuner hardware profile",
    "type": "object",
    "required": ["schema_version", "kind", "device", "gpus"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "kind": {"const": PROFILE_KIND},
        "device": {"enum": ["cuda", "cpu"]},
        "created_utc": {"type": "string"},
        "host": {"type": "string"},
        "budget_s": _POS,
        "elapsed_s": {"type": "number", "minimum": 0},
        "software": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "notes": {"type": "array", "items": {"type": "string"}},
        "gpus": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "count", "memory_gb", "datasheet", "interconnect", "measured"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "catalog_id": {"type": ["string", "null"]},
                    "count": {"type": "integer", "minimum": 1},
                    "memory_gb": _POS,
                    "environment": {
                        "type": "object",
                        "additionalProperties": {"type": ["number", "string", "integer", "boolean", "null"]},
                    },
                    "datasheet": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["bf16_tflops", "hbm_tb_s"],
                        "properties": {
                            "bf16_tflops": _POS_OR_NULL,
                            "fp8_tflops": _POS_OR_NULL,
                            "fp4_tflops": _POS_OR_NULL,
                            "hbm_tb_s": _POS_OR_NULL,
                        },
                    },
                    "interconnect": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["nvlink_domain", "nvlink_gb_s", "ib_gb_s"],
                        "properties": {
                            "nvlink_domain": {"type": "integer", "minimum": 1},
                            "nvlink_gb_s": _POS,
                            "ib_gb_s": _POS,
                            "source": {"enum": ["catalog", "measured", "assumed", "user"]},
                        },
                    },
                    "measured": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["hbm_copy_tb_s", "hbm_read_tb_s", "gemm_bf16_tflops"],
                        "properties": MEASURED_KEYS,
                    },
                    "points": {"type": "object", "additionalProperties": {"type": "array", "items": _POINT}},
                },
            },
        },
    },
}

_UNITS = ("_tb_s", "_gb_s", "_tflops", "_us", "_ms", "_gb", "_w", "_mhz", "_s")


def _jsonschema() -> Any:
    try:
        import jsonschema
    except ImportError:
        raise TunerError(
            "reading a hardware profile needs jsonschema: pip install 'llm-serving-tuner[profile]' "
            "(or just: pip install jsonschema)"
        ) from None
    return jsonschema


def _where(path: Any) -> str:
    out = "profile"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _stem(key: str) -> str:
    for unit in _UNITS:
        if key.endswith(unit):
            return key[: -len(unit)]
    return key


def _explain(error: Any) -> ConfigError:
    """One jsonschema error -> one ConfigError naming the field, the value and the rule."""
    where, value = _where(error.absolute_path), error.instance
    kind = error.validator
    if kind == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return ConfigError(f"{where}.{missing}", None, "required field is missing")
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)[0]
        same = [k for k in allowed if _stem(k) == _stem(unknown)]
        hint = f"units are part of the name: use {same[0]}" if same else f"allowed: {', '.join(allowed)}"
        return ConfigError(f"{where}.{unknown}", error.instance[unknown], f"unknown field; {hint}")
    field = where.rsplit(".", 1)[-1]
    unit = next((u for u in _UNITS if field.endswith(u)), None)
    unit_note = f" (unit: {unit[1:].replace('_', '/')}, in the field name)" if unit else ""
    if kind in ("type", "exclusiveMinimum", "minimum"):
        rule = {
            "type": f"must be of type {error.validator_value}",
            "exclusiveMinimum": f"must be a number > {error.validator_value}",
            "minimum": f"must be a number >= {error.validator_value}",
        }[kind]
        return ConfigError(where, value, rule + unit_note)
    if kind == "const":
        return ConfigError(where, value, f"must be {error.validator_value!r}")
    if kind == "enum":
        return ConfigError(where, value, f"allowed: {', '.join(map(str, error.validator_value))}")
    return ConfigError(where, value, error.message)


def validate_profile(data: Any) -> dict[str, Any]:
    """Check a parsed profile against :data:`PROFILE_SCHEMA`; raise one :class:`ConfigError`
    for the first problem found (deepest path first), naming the field. Returns ``data``."""
    if not isinstance(data, Mapping):
        raise ConfigError("profile", type(data).__name__, "must be a mapping (a tuner hardware profile)")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise ConfigError(
            "profile.schema_version", version, f"this tuner reads version {SCHEMA_VERSION}; upgrade the tuner"
        )
    js = _jsonschema()
    validator = js.Draft202012Validator(PROFILE_SCHEMA)
    errors = sorted(
        validator.iter_errors(data), key=lambda e: (-len(e.absolute_path), list(map(str, e.path)))
    )
    if errors:
        raise _explain(errors[0])
    return dict(data)


def load_profile(path: str | Path) -> dict[str, Any]:
    """Read and validate the profile YAML at ``path``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            "hardware.profile", str(path), "must be a readable profile YAML (tuner profile --out)"
        )
    data = read_yaml(file, "hardware.profile", "must be a readable profile YAML (tuner profile --out)")
    return validate_profile(data)


def entry_matches(entry: Mapping[str, Any], name: str) -> bool:
    """Whether ``name`` (the entry's name, catalog id or a catalog alias) names ``entry``."""
    wanted = name.lower()
    if wanted in (str(entry["name"]).lower(), str(entry.get("catalog_id") or "").lower()):
        return True
    try:
        return bool(entry.get("catalog_id")) and load_gpu(name).name == entry["catalog_id"]
    except ConfigError:
        return False


def select_entry(profile: Mapping[str, Any], gpu: str | None = None) -> dict[str, Any]:
    """The GPU entry named ``gpu`` (name, catalog id or catalog alias), or the only entry."""
    entries = profile["gpus"]
    names = [str(e["name"]) for e in entries]
    if gpu is None:
        if len(entries) != 1:
            raise ConfigError(
                "hardware.gpu", None, f"the profile holds several GPU types; choose one of {names}"
            )
        return dict(entries[0])
    found = [e for e in entries if entry_matches(e, gpu)]
    if not found:
        raise ConfigError("hardware.gpu", gpu, f"not in the hardware profile; it holds {names}")
    return dict(found[0])


def gpu_from_entry(entry: Mapping[str, Any], *, device: str = "cuda") -> GPU:
    """A :class:`GPU` from one validated profile entry, with its measured figures set."""
    if device != "cuda":
        raise ConfigError(
            "profile.device",
            device,
            "a CPU profile only checks an install and never stands in for a GPU; "
            "run `tuner profile` on the GPU machine",
        )
    sheet, link, m = entry["datasheet"], entry["interconnect"], entry["measured"]
    # Unknown GPU: its measured figures stand in for the missing datasheet peaks. The
    # simulator uses the measured_* figures whenever they are set, so no fraction applies twice.
    fp8 = sheet.get("fp8_tflops") or m.get("gemm_fp8_tflops") or 0.0
    return GPU(
        name=str(entry.get("catalog_id") or entry["name"]),
        bf16_tflops=float(sheet.get("bf16_tflops") or m["gemm_bf16_tflops"]),
        fp8_tflops=float(fp8),
        fp4_tflops=float(sheet.get("fp4_tflops") or 0.0),
        hbm_gb=float(entry["memory_gb"]),
        hbm_tb_s=float(sheet.get("hbm_tb_s") or m["hbm_copy_tb_s"]),
        nvlink_gb_s=float(link["nvlink_gb_s"]),
        nvlink_domain=int(link["nvlink_domain"]),
        ib_gb_s=float(link["ib_gb_s"]),
        generation=str((entry.get("environment") or {}).get("generation") or ""),
        board_power_w=_board_power_w(entry),
        measured_hbm_tb_s=_opt(m.get("hbm_copy_tb_s")),
        measured_bf16_tflops=_opt(m.get("gemm_bf16_tflops")),
        measured_fp8_tflops=_opt(m.get("gemm_fp8_tflops")),
        gemm_overhead_us=_opt(m.get("gemm_overhead_us")),
        measured_attn_prefill_tflops=_opt(m.get("attn_prefill_tflops")),
        attn_decode_overhead_us=_opt(m.get("attn_decode_overhead_us")),
        measured_attn_decode_tb_s=_opt(m.get("attn_decode_tb_s")),
        measured_link_gb_s=_opt(m.get("allreduce_bus_gb_s")),
    )


def _board_power_w(entry: Mapping[str, Any]) -> float:
    """The card's power limit as NVML read it (``environment.power_limit_w``), else the
    catalog GPU's board power, else 0 (not known)."""
    limit = (entry.get("environment") or {}).get("power_limit_w")
    if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 0:
        return float(limit)
    if entry.get("catalog_id"):
        try:
            return load_gpu(str(entry["catalog_id"])).board_power_w
        except ConfigError:
            return 0.0
    return 0.0


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def load_profile_gpu(path: str | Path, gpu: str | None = None) -> GPU:
    """The GPU of the profile at ``path`` (``gpu`` chooses among several types)."""
    profile = load_profile(path)
    return gpu_from_entry(select_entry(profile, gpu), device=str(profile["device"]))
