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

from serving import ConfigError
from serving.inputs import parse_yaml, read_text

__all__ = ["DEFAULT_CONSTANTS_FILE", "ENGINES", "GENERATIONS", "Constants", "load_constants"]

#: Packaged default, next to this module (shipped as package data by setup.cfg).
DEFAULT_CONSTANTS_FILE = "constants.yaml"


#: GPU generations with their own achievable fractions of peak; any other generation uses
#: the Hopper values (the H200 kernel measurements in shared/fidelity/kernels/h200.md).
GENERATIONS = ("hopper", "blackwell")
#: Engine families with their own kernel efficiency and per-step overhead.
ENGINES = ("trtllm", "sglang", "vllm")
#: Constants that are fractions in [0, 1].
_FRACTIONS = (
    "hbm_efficiency",
    "hbm_efficiency_blackwell",
    "gemm_compute_efficiency",
    "gemm_compute_efficiency_blackwell",
    "attn_decode_hbm_efficiency",
    "attn_prefill_efficiency",
    "comm_efficiency",
    "burst_fraction_trtllm",
    "burst_fraction_sglang",
    "burst_fraction_vllm",
    "mtp_acceptance",
)


@dataclass(frozen=True)
class Constants:
    """Global efficiencies, fixed costs and latencies; see ``constants.yaml`` for sources.

    Per-generation fields end in ``_blackwell`` (the unsuffixed field is Hopper's and the
    default for other generations); per-engine fields end in ``_trtllm``, ``_sglang`` or
    ``_vllm``.
    """

    hbm_efficiency: float
    hbm_efficiency_blackwell: float
    gemm_compute_efficiency: float
    gemm_compute_efficiency_blackwell: float
    gemm_fixed_us: float
    roofline_sharpness: float
    fp4_compute_scale: float
    fp8_block_compute_scale: float
    attn_decode_fixed_us: float
    attn_decode_hbm_efficiency: float
    attn_prefill_efficiency: float
    elementwise_kernels_per_layer: float
    elementwise_fixed_us: float
    kernel_fixed_scale: float
    elementwise_hidden_passes: float
    kernel_speed_trtllm: float
    kernel_speed_sglang: float
    kernel_speed_vllm: float
    step_overhead_us_trtllm: float
    step_overhead_us_sglang: float
    step_overhead_us_vllm: float
    seq_overhead_us_trtllm: float
    seq_overhead_us_sglang: float
    seq_overhead_us_vllm: float
    request_overhead_us_trtllm: float
    request_overhead_us_sglang: float
    request_overhead_us_vllm: float
    comm_efficiency: float
    nvlink_latency_us: float
    ib_latency_us: float
    moe_imbalance: float
    moe_routing_kernels: float
    moe_expert_fixed_us: float
    kv_transfer_fixed_us: float
    burst_fraction_trtllm: float
    burst_fraction_sglang: float
    burst_fraction_vllm: float
    mtp_acceptance: float

    def hbm(self, generation: str) -> float:
        """Achievable fraction of datasheet HBM bandwidth on ``generation``."""
        return self.hbm_efficiency_blackwell if generation == "blackwell" else self.hbm_efficiency

    def compute(self, generation: str) -> float:
        """Achievable fraction of datasheet dense tensor FLOPS on ``generation``."""
        if generation == "blackwell":
            return self.gemm_compute_efficiency_blackwell
        return self.gemm_compute_efficiency

    def precision_scale(self, precision: str) -> float:
        """Share of the generation's GEMM fraction that ``precision``'s scaled GEMMs reach."""
        return {"fp8": self.fp8_block_compute_scale, "fp4": self.fp4_compute_scale}.get(precision, 1.0)

    def kernel_speed(self, engine: str) -> float:
        """Speed of ``engine``'s kernels relative to the PyTorch/cuBLAS ones measured on H200."""
        return float(getattr(self, f"kernel_speed_{engine}"))

    def request_overhead_s(self, engine: str) -> float:
        """Serving-stack latency ``engine`` adds to every TTFT outside engine steps, seconds."""
        return float(getattr(self, f"request_overhead_us_{engine}")) * 1e-6

    def burst(self, engine: str) -> float:
        """Share of a rank's users whose prompts ``engine`` prefills as one burst."""
        return float(getattr(self, f"burst_fraction_{engine}"))

    def step_overhead_s(self, engine: str) -> float:
        """Per-step engine time outside the GPU graph for ``engine``, in seconds."""
        return float(getattr(self, f"step_overhead_us_{engine}")) * 1e-6

    def seq_overhead_s(self, engine: str) -> float:
        """Host time ``engine`` spends per running sequence per step, in seconds."""
        return float(getattr(self, f"seq_overhead_us_{engine}")) * 1e-6

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
        for name in _FRACTIONS:
            if not 0.0 <= values[name] <= 1.0:
                raise ConfigError(f"{source}.{name}", values[name], "must be in [0, 1]")
        if values["moe_imbalance"] < 1.0:
            raise ConfigError(f"{source}.moe_imbalance", values["moe_imbalance"], "must be >= 1")
        if values["roofline_sharpness"] < 1.0:
            raise ConfigError(f"{source}.roofline_sharpness", values["roofline_sharpness"], "must be >= 1")
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
        text = read_text(file, "backend.options.constants", "must be a readable YAML file")
        source = str(file)
    data = parse_yaml(text, "backend.options.constants", source)
    if not isinstance(data, dict):
        raise ConfigError(source, type(data).__name__, "must be a mapping of constant names to numbers")
    return Constants.from_dict(data, source=source)
