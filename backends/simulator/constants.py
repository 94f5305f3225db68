"""The simulator's global constants: one frozen record, loaded once from YAML.

The YAML keys equal the field names; unknown or missing keys are rejected so a typo in an
alternative constants file cannot silently fall back to a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from serving import ConfigError

__all__ = ["DEFAULT_CONSTANTS_FILE", "Constants", "load_constants"]

#: Packaged default, next to this module (shipped as package data by setup.cfg).
DEFAULT_CONSTANTS_FILE = "constants.yaml"


@dataclass(frozen=True)
class Constants:
    """Global efficiencies, fixed costs and latencies; see ``constants.yaml`` for sources."""

    hbm_efficiency: float
    gemm_compute_efficiency: float
    gemm_fixed_us: float
    attn_decode_fixed_us: float
    attn_decode_hbm_efficiency: float
    attn_prefill_efficiency: float
    elementwise_kernels_per_layer: float
    elementwise_fixed_us: float
    elementwise_hidden_passes: float
    step_overhead_us: float
    request_overhead_us: float
    comm_efficiency: float
    nvlink_latency_us: float
    ib_latency_us: float
    moe_imbalance: float
    kv_transfer_fixed_us: float
    burst_fraction: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "constants") -> Constants:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"{source}.{unknown[0]}", data[unknown[0]], f"unknown key; allowed: {', '.join(names)}"
            )
        missing = [n for n in names if n not in data]
        if missing:
            raise ConfigError(f"{source}.{missing[0]}", None, "required key is missing")
        values: dict[str, float] = {}
        for name in names:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{source}.{name}", value, "must be a non-negative number")
            values[name] = float(value)
        for name in (
            "hbm_efficiency",
            "gemm_compute_efficiency",
            "attn_decode_hbm_efficiency",
            "attn_prefill_efficiency",
            "comm_efficiency",
            "burst_fraction",
        ):
            if not 0.0 <= values[name] <= 1.0:
                raise ConfigError(f"{source}.{name}", values[name], "must be in [0, 1]")
        if values["moe_imbalance"] < 1.0:
            raise ConfigError(f"{source}.moe_imbalance", values["moe_imbalance"], "must be >= 1")
        return cls(**values)


@cache
def load_constants(path: str | None = None) -> Constants:
    """The packaged constants, or those of the YAML file at ``path``; parsed once per path."""
    if path is None:
        text = resources.files("backends.simulator").joinpath(DEFAULT_CONSTANTS_FILE).read_text()
        source = "constants"
    else:
        file = Path(path)
        if not file.is_file():
            raise ConfigError("backend.options.constants", path, "must be a readable YAML file")
        text = file.read_text()
        source = str(file)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(source, type(data).__name__, "must be a mapping of constant names to numbers")
    return Constants.from_dict(data, source=source)
