"""What the simulator assumes of a GPU, in a hardware profile's units.

Without a profile the simulator prices kernels at "datasheet x fitted fraction"
(``constants.yaml``); :func:`assumed_figures` writes those products under the names of a
profile's ``measured`` section (``hbm_copy_tb_s``, ``gemm_bf16_tflops``, ...). ``tuner profile
--compare`` prints them beside what a node measured, and a profile holding exactly these
figures prices every deployment as the catalog entry does (``costs.py`` uses a GPU's
``measured_*`` fields in place of the products; tests check the two agree). Keep this in step
with the efficiency lines of :class:`~backends.simulator.costs.WorkerCost`.
"""

from __future__ import annotations

from serving import GPU

from .constants import Constants, load_constants

__all__ = ["assumed_figures"]


def assumed_figures(gpu: GPU, consts: Constants | None = None) -> dict[str, float | None]:
    """The simulator's PyTorch-kernel-level figures for ``gpu`` (engine speed excluded)."""
    c = consts or load_constants()
    gen = gpu.generation
    hbm = gpu.hbm_tb_s * c.hbm(gen)
    return {
        "hbm_copy_tb_s": hbm,
        "hbm_read_tb_s": hbm,
        "gemm_bf16_tflops": gpu.bf16_tflops * c.compute(gen),
        "gemm_fp8_tflops": gpu.fp8_tflops * c.compute(gen) if gpu.fp8_tflops else None,
        "gemm_overhead_us": c.gemm_fixed_us,
        "gemm_stream_tb_s": hbm,
        "attn_prefill_tflops": gpu.bf16_tflops * c.attn_prefill_efficiency,
        "attn_decode_overhead_us": c.attn_decode_fixed_us,
        "attn_decode_tb_s": hbm * c.attn_decode_hbm_efficiency / c.hbm_efficiency,
        "moe_grouped_tflops": gpu.bf16_tflops * c.compute(gen),
        "allreduce_bus_gb_s": gpu.nvlink_gb_s * c.comm_efficiency if gpu.nvlink_domain > 1 else None,
        "all_to_all_bus_gb_s": gpu.nvlink_gb_s * c.comm_efficiency if gpu.nvlink_domain > 1 else None,
        "collective_latency_us": c.nvlink_latency_us if gpu.nvlink_domain > 1 else None,
    }
