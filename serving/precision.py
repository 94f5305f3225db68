"""Numeric formats of weights, compute and KV cache, and their sizes."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["FP4_FORMATS", "KV_DTYPES", "PRECISIONS", "bytes_per_param", "kv_bytes_per_element"]

#: Weight/compute precisions: bytes per parameter (fp8's per-tensor or 128x128-block
#: scales add under 0.01%).
_WEIGHT_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1.0 / 32.0}
PRECISIONS = tuple(_WEIGHT_BYTES)
#: 4-bit formats: half a byte per value plus one 8-bit scale per block. MXFP4 (OCP
#: microscaling, gpt-oss): an E8M0 scale per 32 values, 0.5 + 1/32 bytes. NVFP4 (ModelOpt):
#: an E4M3 scale per 16 values, 0.5 + 1/16, plus one fp32 scale per tensor.
FP4_FORMATS = {"nvfp4": 0.5 + 1.0 / 16.0, "mxfp4": 0.5 + 1.0 / 32.0}

#: KV-cache dtypes as vLLM's ``--kv-cache-dtype`` names them; ``auto`` follows the model
#: (16-bit unless the weights are fp8/fp4 and the engine keeps KV in fp8).
_KV_BYTES = {"auto": None, "bfloat16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
KV_DTYPES = tuple(_KV_BYTES)


def bytes_per_param(precision: str, fp4_format: str = "") -> float:
    """Bytes one weight takes in ``precision``; ``fp4_format`` (a :data:`FP4_FORMATS` key)
    sets the block-scale overhead of fp4, "" keeps the generic 0.5 + 1/32."""
    try:
        size = _WEIGHT_BYTES[precision]
    except KeyError:
        raise ConfigError("precision", precision, f"allowed: {', '.join(PRECISIONS)}") from None
    if precision == "fp4" and fp4_format:
        if fp4_format not in FP4_FORMATS:
            raise ConfigError("fp4_format", fp4_format, f"allowed: {', '.join(FP4_FORMATS)}")
        return FP4_FORMATS[fp4_format]
    return size


def kv_bytes_per_element(kv_cache_dtype: str, precision: str) -> float:
    """Bytes per KV element; ``auto`` is 16-bit as in vLLM (fp8 KV must be asked for)."""
    if kv_cache_dtype not in _KV_BYTES:
        raise ConfigError("kv_cache_dtype", kv_cache_dtype, f"allowed: {', '.join(KV_DTYPES)}")
    size = _KV_BYTES[kv_cache_dtype]
    del precision  # vLLM's "auto" keeps the model dtype (16-bit) whatever the weight format
    return 2.0 if size is None else size
