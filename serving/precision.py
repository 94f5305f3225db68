"""Numeric formats of weights, compute and KV cache, and their sizes."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["KV_DTYPES", "PRECISIONS", "bytes_per_param", "kv_bytes_per_element"]

#: Weight/compute precisions: bytes per parameter. fp4 carries one 8-bit scale per
#: 16 (NVFP4) or 32 (MXFP4) values; 0.5 + 1/32 is the NVFP4-style figure.
_WEIGHT_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1.0 / 32.0}
PRECISIONS = tuple(_WEIGHT_BYTES)

#: KV-cache dtypes as vLLM's ``--kv-cache-dtype`` names them; ``auto`` follows the model
#: (16-bit unless the weights are fp8/fp4 and the engine keeps KV in fp8).
_KV_BYTES = {"auto": None, "bfloat16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
KV_DTYPES = tuple(_KV_BYTES)


def bytes_per_param(precision: str) -> float:
    """Bytes one weight takes in ``precision``."""
    try:
        return _WEIGHT_BYTES[precision]
    except KeyError:
        raise ConfigError("precision", precision, f"allowed: {', '.join(PRECISIONS)}") from None


def kv_bytes_per_element(kv_cache_dtype: str, precision: str) -> float:
    """Bytes per KV element; ``auto`` is 16-bit as in vLLM (fp8 KV must be asked for)."""
    if kv_cache_dtype not in _KV_BYTES:
        raise ConfigError("kv_cache_dtype", kv_cache_dtype, f"allowed: {', '.join(KV_DTYPES)}")
    size = _KV_BYTES[kv_cache_dtype]
    del precision  # vLLM's "auto" keeps the model dtype (16-bit) whatever the weight format
    return 2.0 if size is None else size
