"""Built-in catalogs of model architectures and GPUs, and Hugging Face config parsing.

Lookups are case-insensitive and accept the short name, the Hugging Face id or an alias.
A model may also be a local directory holding a Hugging Face ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .arch import ModelArch
from .errors import ConfigError
from .hardware import GPU
from .inputs import read_text

__all__ = [
    "arch_from_hf_config",
    "gpu_names",
    "gpu_price_usd_per_hour",
    "load_gpu",
    "load_model",
    "model_names",
]


@cache
def _table(filename: str) -> dict[str, dict[str, Any]]:
    text = resources.files("serving").joinpath("data", filename).read_text()
    data: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return data


def _index(filename: str, extra_key: str) -> dict[str, str]:
    index: dict[str, str] = {}
    for key, entry in _table(filename).items():
        for alias in (key, entry.get(extra_key, ""), *entry.get("aliases", [])):
            if alias:
                index[str(alias).lower()] = key
    return index


def model_names() -> list[str]:
    return list(_table("models.yaml"))


def gpu_names() -> list[str]:
    return list(_table("gpus.yaml"))


def load_model(name: str) -> ModelArch:
    """A catalog model by name/alias, or a directory with a Hugging Face ``config.json``."""
    config = _config_json(name)
    if config is not None:
        return arch_from_hf_config(_parse_config(config), name=str(config.parent))
    key = _index("models.yaml", "hf_id").get(name.lower())
    if key is None:
        raise ConfigError(
            "model", name, f"allowed: a directory with config.json or one of {', '.join(model_names())}"
        )
    entry = {k: v for k, v in _table("models.yaml")[key].items() if k != "aliases"}
    return ModelArch(name=key, **entry)


def _config_json(name: str) -> Path | None:
    """``name/config.json`` when ``name`` is a directory holding one."""
    if len(name) > 4096:  # PATH_MAX: no directory has this name, and stat would fail
        return None
    try:
        path = Path(name) / "config.json"
        return path if path.is_file() else None
    except (OSError, ValueError):  # a name too long for the file system, or holding NUL
        return None


def _parse_config(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; NaN and Infinity are refused like any other non-JSON."""
    field = f"model ({path})"
    text = read_text(path, field, "must be a readable Hugging Face config.json")

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a number")

    try:
        data = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        raise ConfigError(
            field, str(exc)[:80], "must be a JSON object (a Hugging Face config.json)"
        ) from None
    except RecursionError:
        raise ConfigError(
            field, str(path), "must be a JSON object nested at most a few hundred levels"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(field, data, "must be a JSON object (a Hugging Face config.json)")
    return data


def load_gpu(name: str) -> GPU:
    """A catalog GPU by id (``h200_sxm``), name (``H200-SXM``) or alias (``H200``)."""
    key = _index("gpus.yaml", "name").get(name.lower())
    if key is None:
        raise ConfigError("gpu", name, f"allowed: {', '.join(gpu_names())}")
    entry = {k: v for k, v in _table("gpus.yaml")[key].items() if k not in ("aliases", "name")}
    return GPU(name=key, **entry)


def gpu_price_usd_per_hour(name: str) -> float | None:
    """The default rental price of one catalog GPU for one hour (``data/gpu_prices.yaml``,
    with its sources), looked up like :func:`load_gpu`; None for a GPU the catalog does not
    hold (e.g. a measured profile's GPU of another name). Prices are not hardware facts, so
    they live in their own table, away from the datasheet figures."""
    key = _index("gpus.yaml", "name").get(name.lower())
    entry = _table("gpu_prices.yaml").get(key) if key is not None else None
    return None if entry is None else float(entry["usd_per_gpu_hour"])


# Hugging Face config keys for each ModelArch field, first match wins.
_HF_KEYS: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "heads": ("num_attention_heads", "n_head"),
    "kv_heads": ("num_key_value_heads",),
    "head_dim": ("head_dim",),
    "intermediate": ("intermediate_size", "ffn_hidden_size"),
    "vocab": ("vocab_size",),
    "max_position": ("max_position_embeddings",),
    "experts": ("n_routed_experts", "num_experts", "num_local_experts"),
    "active_experts": ("num_experts_per_tok", "moe_top_k", "num_experts_per_token"),
    "shared_experts": ("n_shared_experts",),
    "moe_intermediate": ("moe_intermediate_size",),
    "first_k_dense": ("first_k_dense_replace",),
    "q_lora_rank": ("q_lora_rank",),
    "kv_lora_rank": ("kv_lora_rank",),
    "qk_nope_head_dim": ("qk_nope_head_dim",),
    "qk_rope_head_dim": ("qk_rope_head_dim",),
    "v_head_dim": ("v_head_dim",),
    "tied_embeddings": ("tie_word_embeddings",),
}


def arch_from_hf_config(config: dict[str, Any], *, name: str) -> ModelArch:
    """Map a Hugging Face ``config.json`` onto :class:`ModelArch`."""
    text_config = config.get("text_config") or {}
    if not isinstance(text_config, dict):
        raise ConfigError(f"model ({name}/config.json) text_config", text_config, "must be a JSON object")
    cfg = {**text_config, **config}  # multimodal configs nest the LM
    values: dict[str, Any] = {}
    for field_name, keys in _HF_KEYS.items():
        for key in keys:
            if cfg.get(key) is not None:
                values[field_name] = _config_value(cfg[key], key, field_name, name)
                break
    for required in ("layers", "hidden", "heads", "vocab"):
        if required not in values:
            raise ConfigError(
                f"model ({name}/config.json)", sorted(cfg)[:8], f"needs '{_HF_KEYS[required][0]}'"
            )
    values.setdefault("kv_heads", values["heads"])
    values.setdefault("head_dim", values["hidden"] // values["heads"])
    if values["head_dim"] < 1:
        allowed = f"must be at least num_attention_heads ({values['heads']}) when head_dim is not given"
        raise ConfigError(f"model ({name}/config.json) hidden_size", values["hidden"], allowed)
    values.setdefault("intermediate", 4 * values["hidden"])
    if values.get("experts") and not values.get("moe_intermediate"):
        values["moe_intermediate"] = values["intermediate"]  # Mixtral/gpt-oss style configs
    quant = cfg.get("quantization_config") or {}
    block = quant.get("weight_block_size") if isinstance(quant, dict) else None
    if isinstance(block, list) and block:
        values["fp8_weight_block"] = _config_value(block[0], "weight_block_size", "fp8_weight_block", name)
    return ModelArch(name=name, **values)


#: ModelArch fields that a usable model cannot have at zero (sizes and counts of every layer).
_POSITIVE = ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "max_position")
_INTS = {f.name for f in fields(ModelArch) if f.type in ("int", int)}


def _config_value(value: Any, key: str, field_name: str, name: str) -> int | bool:
    """One config.json value, checked: a bool for a flag, else an integer >= 0 (>= 1 for the
    sizes in :data:`_POSITIVE`); a float with an integral value is accepted as that integer."""
    if field_name not in _INTS:
        if value not in (True, False):  # 0 and 1 too
            raise ConfigError(f"model ({name}/config.json) {key}", value, "must be true or false")
        return bool(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    minimum = 1 if field_name in _POSITIVE else 0
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 2**40:
        raise ConfigError(
            f"model ({name}/config.json) {key}", value, f"must be an integer in [{minimum}, 2^40]"
        )
    return value
