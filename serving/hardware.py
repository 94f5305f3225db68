"""GPU facts: peak compute per precision, memory, interconnect."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "MEASURED_FIELDS"]


@dataclass(frozen=True)
class GPU:
    """Datasheet figures of one GPU model (dense tensor TFLOPS, per-direction bandwidths).

    The ``measured_*``, ``*_overhead_us`` and ``measured_link_gb_s`` fields are optional
    figures a hardware profile (``tuner profile``, :mod:`serving.hardware_profile`) measured
    on real cards. ``None`` (every catalog GPU) means "not measured": the simulator then uses
    the datasheet figure times its fitted fraction; a measured figure replaces that product.
    """

    name: str
    bf16_tflops: float
    hbm_gb: float
    hbm_tb_s: float
    nvlink_gb_s: float
    nvlink_domain: int
    ib_gb_s: float
    fp8_tflops: float = 0.0
    fp4_tflops: float = 0.0
    generation: str = ""
    #: Maximum board power (TDP / max thermal design power) of one GPU, watts: the
    #: simulator's energy estimate scales with it (``backends/simulator/power.py``). 0 means
    #: not known (the energy of an estimated point is then missing, with that reason).
    board_power_w: float = 0.0
    # -- measured on this node (None: use datasheet x the simulator's fitted fraction) ------
    #: Streaming HBM bandwidth a kernel reaches (copy), TB/s.
    measured_hbm_tb_s: float | None = None
    #: Sustained dense GEMM throughput, TFLOPS (bf16; fp8 via ``_scaled_mm``).
    measured_bf16_tflops: float | None = None
    measured_fp8_tflops: float | None = None
    #: Fixed cost of one small-M GEMM kernel (t = overhead + bytes / bandwidth), microseconds.
    gemm_overhead_us: float | None = None
    #: Causal prefill attention throughput (bf16, long context), TFLOPS.
    measured_attn_prefill_tflops: float | None = None
    #: Decode attention: t = overhead + KV bytes / bandwidth.
    attn_decode_overhead_us: float | None = None
    measured_attn_decode_tb_s: float | None = None
    #: All-reduce bus bandwidth inside the node's GPU domain (NCCL), GB/s.
    measured_link_gb_s: float | None = None

    def peak_tflops(self, precision: str) -> float:
        """Dense tensor TFLOPS for ``precision``; a format the GPU lacks runs at the next
        wider one it has (e.g. fp8 weights on A100 compute in bf16, as vLLM's Marlin does)."""
        if precision == "fp4" and self.fp4_tflops:
            return self.fp4_tflops
        if precision in ("fp4", "fp8") and self.fp8_tflops:
            return self.fp8_tflops
        return self.bf16_tflops

    def measured_tflops(self, precision: str) -> float | None:
        """Measured sustained TFLOPS of the format :meth:`peak_tflops` would use, or None
        (fp4 is never measured: its tensor cores need engine kernels torch does not expose)."""
        if precision == "fp4" and self.fp4_tflops:
            return None
        if precision in ("fp4", "fp8") and self.fp8_tflops:
            return self.measured_fp8_tflops
        return self.measured_bf16_tflops

    @property
    def measured(self) -> bool:
        """True when any figure comes from a hardware profile."""
        return any(getattr(self, name) is not None for name in MEASURED_FIELDS)

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gb * 1e9


#: The optional measured fields of :class:`GPU`, in declaration order.
MEASURED_FIELDS = (
    "measured_hbm_tb_s",
    "measured_bf16_tflops",
    "measured_fp8_tflops",
    "gemm_overhead_us",
    "measured_attn_prefill_tflops",
    "attn_decode_overhead_us",
    "measured_attn_decode_tb_s",
    "measured_link_gb_s",
)
