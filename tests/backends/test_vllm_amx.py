"""The vLLM plugin that asks Linux for AMX tiles: registered, and gated to vLLM's CPU target."""

from __future__ import annotations

import platform
from importlib.metadata import entry_points

import pytest

from backends.vllm import amx


def test_the_plugin_is_registered_where_vllm_looks_for_general_plugins() -> None:
    values = {ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert "backends.vllm.amx:register" in values


def test_only_the_cpu_target_asks_for_amx() -> None:
    on_x86_linux = platform.system() == "Linux" and platform.machine() == "x86_64"
    assert amx.cpu_amx_wanted({"VLLM_TARGET_DEVICE": "cpu"}) is on_x86_linux
    assert amx.cpu_amx_wanted({"VLLM_TARGET_DEVICE": "cuda"}) is False
    assert amx.cpu_amx_wanted({}) is False


@pytest.mark.skipif(platform.machine() != "x86_64", reason="arch_prctl is x86_64 only")
def test_the_request_is_granted_where_the_cpu_has_amx() -> None:
    with open("/proc/cpuinfo") as f:
        has_amx = "amx_tile" in f.read()
    assert amx.request_amx_permission() is has_amx
    assert amx.request_amx_permission() is has_amx  # idempotent
