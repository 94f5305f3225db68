"""Spec validation: each bad input gets one clear error naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from serving import ConfigError
from tuner.spec import build_problem, load_spec, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE: dict[str, Any] = {
    "model": "Qwen/Qwen3-32B",
    "precision": "bf16",
    "hardware": {"gpu": "H200", "gpus": 8, "gpus_per_node": 8},
    "workload": {"isl": 4000, "osl": 1000, "concurrency": [1, 4, 16]},
    "sla": {"min_tok_s_user": 30, "max_ttft_ms": 2000},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def test_valid_spec_parses_with_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.workload.concurrency == (1, 4, 16)
    assert spec.sla.max_ttft_ms == 2000.0
    assert spec.backend.name == "simulator"
    assert spec.study.sampler == "tpe"
    assert spec.storage_url().endswith("study.db")


@pytest.mark.parametrize(
    ("path", "value", "field", "hint"),
    [
        ("precision", "int3", "precision", "allowed: bf16"),
        ("hardware.gpus", 0, "hardware.gpus", "integer >= 1"),
        ("hardware.gpus", "eight", "hardware.gpus", "integer"),
        ("hardware.gpu", "H900", "gpu", "allowed:"),
        ("hardware.nodes", 2, "hardware.nodes", "unknown key"),
        ("workload.isl", -5, "workload.isl", ">= 1"),
        ("workload.concurrency", [4, 2], "workload.concurrency", "increasing"),
        ("workload.concurrency", [], "workload.concurrency", "non-empty"),
        ("sla.percentile", 75, "sla.percentile", "50, 90, 99"),
        ("sla.max_ttft_ms", 0, "sla.max_ttft_ms", "> 0"),
        ("sla.min_tok_s_user", "fast", "sla.min_tok_s_user", "number"),
        ("study.sampler", "cmaes", "study.sampler", "tpe"),
        ("study.objective", "latency", "study.objective", "sla, front, cost"),
        ("study.trials", 0, "study.trials", ">= 1"),
        ("search_space.overrides", [1], "search_space.overrides", "mapping"),
        ("extra", 1, "extra", "unknown key"),
    ],
)
def test_bad_input_names_field(path: str, value: Any, field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(with_change(path, value))
    message = str(info.value)
    assert message.startswith(field), message
    assert hint in message
    assert "\n" not in message


def test_missing_required_field() -> None:
    data = copy.deepcopy(BASE)
    del data["workload"]["osl"]
    with pytest.raises(ConfigError, match=r"^workload\.osl: got None; required"):
        parse_spec(data)


def test_unknown_model_lists_catalog() -> None:
    spec = parse_spec(with_change("model", "acme/NotAModel"))
    with pytest.raises(ConfigError, match=r"model: .*Qwen3-32B"):
        build_problem(spec)


def test_model_from_local_hf_config(tmp_path: Path) -> None:
    config = {
        "num_hidden_layers": 4,
        "hidden_size": 256,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "intermediate_size": 1024,
        "vocab_size": 1000,
    }
    import json

    (tmp_path / "config.json").write_text(json.dumps(config))
    problem = build_problem(parse_spec(with_change("model", str(tmp_path))))
    assert problem.arch.layers == 4 and problem.arch.head_dim == 32 and problem.arch.kv_heads == 2
    assert problem.arch.fp8_weight_block == 0  # no quantization_config: per-tensor FP8 assumed
    config["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}  # type: ignore[assignment]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert build_problem(parse_spec(with_change("model", str(tmp_path)))).arch.fp8_weight_block == 128


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_spec(bad)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_valid(example: Path) -> None:
    spec = load_spec(example)
    local = spec.backend.name != "simulator" and spec.model.startswith(("models/", "./", "/"))
    if local and not Path(spec.model).is_dir():
        pytest.skip(f"{example.name} needs the local model its comment says how to build")
    problem = build_problem(spec)
    assert problem.gpus == spec.hardware.gpus
