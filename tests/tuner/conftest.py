"""Fixtures for study and CLI tests: small real specs on the simulator, a failing backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import backends.registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def small_spec(tmp_path: Path, **changes: Any) -> Path:
    """A fast spec (Llama-3.1-8B on 2 x H100, small space) written to tmp_path."""
    data: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B",
        "precision": "bf16",
        "hardware": {"gpu": "H100", "gpus": 2, "gpus_per_node": 2},
        "workload": {"isl": 1000, "osl": 200, "concurrency": [1, 4, 16, 64]},
        "sla": {"min_tok_s_user": 40},
        "search_space": {"preset": "small"},
        "study": {"sampler": "random", "trials": 12, "seed": 1},
        "output_dir": str(tmp_path / "run"),
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def flaky_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers ``flaky``: the simulator, failing every candidate whose agg TP is 1."""
    monkeypatch.setitem(backends.registry.BACKENDS, "flaky", "tests.tuner.flaky_backend:FlakyBackend")
    return "flaky"
