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

from .arch import QUANT_MODULES, ModelArch
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
    "unquantized_modules",
]


@cache
def _table(filename: str) -> dict[str, dict[str, Any]]:
    text = resources.files("serving").joinpath("data", filename).read_text()
    data: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return data


@cache
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
    return _catalog_model(key)


@cache
def _catalog_model(key: str) -> ModelArch:
    """One frozen record per catalog entry (its derived counts are computed once)."""
    entry = {k: v for k, v in _table("models.yaml")[key].items() if k not in ("aliases", "source")}
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
    "moe_layer_step": ("decoder_sparse_step", "interleave_moe_layer_step", "moe_layer_freq"),
    "shared_expert_intermediate": ("shared_expert_intermediate_size",),
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
    if values.get("shared_expert_intermediate") and "shared_experts" not in values:
        values["shared_experts"] = 1  # Qwen2-MoE: one shared expert, sized by this key
    values.update(_sliding_window(cfg, values["layers"], name))
    values.update(_mlp_only_layers(cfg, values["layers"], name))
    if cfg.get("model_type") == "gpt_oss":
        values["attention_sinks"] = True  # GptOssAttention.sinks: a learned logit per head
    quant = cfg.get("quantization_config") or {}
    if isinstance(quant, dict):
        values.update(_quantization(quant, name))
    return ModelArch(name=name, **values)


def _sliding_window(cfg: dict[str, Any], layers: int, name: str) -> dict[str, int]:
    """``sliding_window`` and how many layers use it: ``layer_types`` when given, else
    Gemma-3's ``sliding_window_pattern`` (every n-th layer global), else every layer
    (Mistral); none when ``use_sliding_window`` is false (Qwen2/3 ship a window they do
    not use)."""
    window = cfg.get("sliding_window")
    if window is None or cfg.get("use_sliding_window") is False:
        return {}
    size = int(_config_value(window, "sliding_window", "sliding_window", name))
    if size == 0:
        return {}
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        sliding = sum(1 for t in types[:layers] if t == "sliding_attention")
    elif isinstance(cfg.get("sliding_window_pattern"), int) and cfg["sliding_window_pattern"] > 0:
        sliding = layers - layers // cfg["sliding_window_pattern"]
    else:
        sliding = layers
    return {"sliding_window": size, "sliding_layers": sliding} if sliding else {}


def _mlp_only_layers(cfg: dict[str, Any], layers: int, name: str) -> dict[str, tuple[int, ...]]:
    """Qwen-MoE ``mlp_only_layers``: layer indices that keep a dense MLP."""
    dense = cfg.get("mlp_only_layers")
    if not isinstance(dense, list) or not dense:
        return {}
    ids = (_config_value(i, "mlp_only_layers", "first_k_dense", name) for i in dense)
    return {"mlp_only_layers": tuple(sorted({int(i) for i in ids if int(i) < layers}))}


#: quantization_config keys that list modules kept out of the quantized format.
_EXCLUDE_KEYS = ("modules_to_not_convert", "exclude_modules", "ignore", "ignored_layers")


def _quantization(quant: dict[str, Any], name: str) -> dict[str, Any]:
    """The per-precision checkpoint facts of a ``quantization_config``: FP8 weight blocks,
    the 4-bit format, and which modules stay 16-bit."""
    method = str(quant.get("quant_method", "")).lower()
    algo = str(quant.get("quant_algo", "")).upper()  # ModelOpt: quant_method "modelopt"
    kept: list[str] = []
    for key in _EXCLUDE_KEYS:
        if isinstance(quant.get(key), list):
            kept += [str(pattern) for pattern in quant[key]]
    modules = unquantized_modules(kept)
    out: dict[str, Any] = {}
    if method == "mxfp4" or "NVFP4" in algo or method in ("nvfp4", "modelopt_fp4"):
        out["fp4_format"] = "mxfp4" if method == "mxfp4" else "nvfp4"
        out["fp4_unquantized"] = modules
    elif method == "fp8" or algo == "FP8":
        out["fp8_unquantized"] = modules
    block = quant.get("weight_block_size")
    if isinstance(block, list) and block:
        out["fp8_weight_block"] = _config_value(block[0], "weight_block_size", "fp8_weight_block", name)
    return out


def unquantized_modules(patterns: list[str]) -> tuple[str, ...]:
    """The :data:`serving.arch.QUANT_MODULES` groups that module-name patterns of a
    ``quantization_config`` exclusion list cover (any layer counts for the whole group;
    the router, embeddings and LM head are always 16-bit and are not listed)."""
    found: set[str] = set()
    qkv_names = ("q_proj", "k_proj", "v_proj", "qkv", "q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj")
    for pattern in (p.lower() for p in patterns):
        if "shared_expert" in pattern:
            found.add("shared_experts")
        elif "experts" in pattern:
            found.add("experts")
        elif "attn" in pattern:
            names = pattern.rsplit("attn", 1)[1]
            if "o_proj" in names or "out_proj" in names:
                found.add("o_proj")
            elif any(n in names for n in qkv_names):
                found.add("qkv")
            else:
                found.update(("qkv", "o_proj"))  # the whole attention block
        elif (
            "mlp" in pattern
            and not pattern.rstrip("*").endswith((".gate", ".router"))
            and "router" not in pattern
        ):
            found.add("dense_mlp")
    return tuple(m for m in QUANT_MODULES if m in found)


#: ModelArch fields that a usable model cannot have at zero (sizes and counts of every layer).
_POSITIVE = (
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "intermediate",
    "vocab",
    "max_position",
    "moe_layer_step",
)
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
