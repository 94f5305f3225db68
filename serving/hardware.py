"""GPU facts: peak compute per precision, memory, interconnect."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU"]


@dataclass(frozen=True)
class GPU:
    """Datasheet figures of one GPU model (dense tensor TFLOPS, per-direction bandwidths)."""

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

    def peak_tflops(self, precision: str) -> float:
        """Dense tensor TFLOPS for ``precision``; a format the GPU lacks runs at the next
        wider one it has (e.g. fp8 weights on A100 compute in bf16, as vLLM's Marlin does)."""
        if precision == "fp4" and self.fp4_tflops:
            return self.fp4_tflops
        if precision in ("fp4", "fp8") and self.fp8_tflops:
            return self.fp8_tflops
        return self.bf16_tflops

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gb * 1e9
