"""Loading and validating search spaces: presets, overrides, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from search_spaces import COUNT_MAX, EP_ALL, SearchSpace, load_space, parse_space, preset_names
from serving import ConfigError


def test_preset_names_lists_the_shipped_presets() -> None:
    assert {"dense-single-node", "moe-multi-node", "small"} <= set(preset_names())


def test_every_preset_loads(preset: str) -> None:
    space = load_space(preset)
    assert isinstance(space, SearchSpace)
    assert space.description
    assert parse_space(space.to_dict()) == space


def test_moe_preset_uses_symbols() -> None:
    space = load_space("moe-multi-node")
    assert space.prefill.ep == (EP_ALL,)
    assert space.decode.count[-1] == COUNT_MAX
    assert space.agg.ep == (1, EP_ALL)


def test_defaults_fill_missing_keys() -> None:
    space = parse_space({"modes": ["agg"]})
    assert space.modes == ("agg",)
    assert space.agg.tp == (1, 2, 4, 8)
    assert space.kv_cache_dtype == ("auto",)


def test_scalars_allowed_for_shared_knobs_and_lists_sorted() -> None:
    space = parse_space({"gpu_memory_utilization": 0.85, "agg": {"tp": [8, 1, 2]}})
    assert space.gpu_memory_utilization == (0.85,)
    assert space.agg.tp == (1, 2, 8)


def test_overrides_replace_preset_values_and_merge_role_sections() -> None:
    space = load_space("dense-single-node", {"modes": ["disagg"], "decode": {"tp": [8]}})
    base = load_space("dense-single-node")
    assert space.modes == ("disagg",)
    assert space.decode.tp == (8,)
    assert space.decode.max_num_seqs == base.decode.max_num_seqs


def test_load_from_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("modes: [agg]\nagg:\n  tp: [2]\n  count: [max]\n")
    space = load_space(str(path))
    assert space.agg.tp == (2,)
    assert space.agg.count == (COUNT_MAX,)


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        ({"bogus": 1}, "search_space.bogus", "unknown key"),
        ({"decode": {"tensor_parallel": [2]}}, "search_space.decode.tensor_parallel", "unknown key"),
        ({"agg": {"tp": 4}}, "search_space.agg.tp", "a non-empty list of positive powers of two"),
        ({"decode": {"tp": [1, 3]}}, "search_space.decode.tp", "positive powers of two"),
        ({"prefill": {"dp": [0]}}, "search_space.prefill.dp", "positive powers of two"),
        ({"agg": {"tp": []}}, "search_space.agg.tp", "non-empty"),
        ({"agg": {"tp": [2, 2]}}, "search_space.agg.tp", "without duplicates"),
        ({"agg": {"tp": [True]}}, "search_space.agg.tp", "powers of two"),
        ({"agg": {"ep": [1, 4]}}, "search_space.agg.ep", "'all'"),
        ({"prefill": {"count": [1, "max"]}}, "search_space.prefill.count", "positive integers"),
        ({"decode": {"count": [1, "many"]}}, "search_space.decode.count", "or 'max'"),
        ({"modes": ["agg", "split"]}, "search_space.modes", "agg, disagg"),
        ({"kv_cache_dtype": ["int4"]}, "search_space.kv_cache_dtype", "fp8"),
        ({"gpu_memory_utilization": [1.5]}, "search_space.gpu_memory_utilization", "[0.05, 1.0]"),
        ({"enable_chunked_prefill": "yes"}, "search_space.enable_chunked_prefill", "true, false"),
        ({"agg": [1, 2]}, "search_space.agg", "a mapping"),
    ],
)
def test_bad_input_names_field_value_and_rule(overrides: dict[str, Any], field: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_space("small", overrides)
    assert info.value.field == field
    assert allowed in info.value.allowed
    assert field in str(info.value)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError) as info:
        load_space("huge")
    assert info.value.field == "search_space.preset"
    for name in preset_names():
        assert name in str(info.value)


def test_missing_yaml_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_space(str(tmp_path / "absent.yaml"))


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- agg\n- disagg\n")
    with pytest.raises(ConfigError, match="a mapping"):
        load_space(str(path))


def test_broken_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("agg: {tp: [1, 2\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_space(str(path))


def test_overrides_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError):
        load_space("small", [("modes", ["agg"])])  # type: ignore[arg-type]
