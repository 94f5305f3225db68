"""Energy on the LoadPoint record: its definition, and the round trip through every store."""

from __future__ import annotations

import math
from typing import Any

import pytest

from serving import LoadPoint, load_gpu
from serving.catalog import gpu_names


def _point(**kw: Any) -> LoadPoint:
    values: dict[str, Any] = dict(
        concurrency=4,
        gpus=2,
        ttft_ms_p50=100.0,
        ttft_ms_p90=150.0,
        ttft_ms_p99=200.0,
        tpot_ms_p50=10.0,
        tpot_ms_p90=12.0,
        tpot_ms_p99=15.0,
        tok_s_user=100.0,
        tok_s_gpu=600.0,
        output_tok_s_gpu=200.0,
        requests_s=2.0,
        num_requests=40,
    )
    return LoadPoint(**{**values, **kw})


def test_tok_per_j_counts_output_tokens_of_all_gpus_over_the_window() -> None:
    # 200 output tok/s/GPU x 2 GPUs x 20 s = 8000 output tokens, over 4000 J.
    p = _point().with_energy(4000.0, seconds=20.0, source="measured")
    assert p.energy_j == 4000.0 and p.tok_per_j == pytest.approx(2.0)
    assert p.energy_source == "measured" and p.energy_missing_reason == ""
    assert p.metric("tok_per_j") == pytest.approx(2.0)


def test_unusable_reading_or_source_is_refused() -> None:
    for joules, seconds in ((math.nan, 1.0), (0.0, 1.0), (-5.0, 1.0), (10.0, 0.0)):
        p = _point().with_energy(joules, seconds=seconds, source="measured")
        assert p.energy_source == "missing" and math.isnan(p.tok_per_j), (joules, seconds)
        assert "no usable reading" in p.energy_missing_reason
    with pytest.raises(ValueError, match="energy source"):
        _point().with_energy(1.0, seconds=1.0, source="missing")


@pytest.mark.parametrize(
    "point",
    [
        _point().with_energy(4000.0, seconds=20.0, source="estimated"),
        _point().without_energy("no NVML on this machine (devices: cpu)"),
        _point(),
    ],
    ids=["with-energy", "missing-with-reason", "default"],
)
def test_round_trip_through_dict_and_csv_strings(point: LoadPoint) -> None:
    # The trial user attrs store to_dict(); points.csv / front.csv hold the same as strings
    # (NaN written as "nan", an empty reason as ""), and both read back to the same record.
    assert LoadPoint.from_dict(point.to_dict()) == _same(point)
    as_csv = {k: ("" if v == "" else str(v)) for k, v in point.to_dict().items()}
    assert LoadPoint.from_dict(as_csv) == _same(point)


def _same(point: LoadPoint) -> Any:
    """Equality that treats NaN as equal to NaN (the unmeasured fields)."""

    class Same:
        def __eq__(self, other: object) -> bool:
            assert isinstance(other, LoadPoint)
            for k, v in point.to_dict().items():
                w = other.to_dict()[k]
                if isinstance(v, float) and math.isnan(v):
                    assert isinstance(w, float) and math.isnan(w), k
                else:
                    assert w == v, k
            return True

    return Same()


def test_points_stored_before_energy_read_back_as_missing_not_recorded() -> None:
    old = {k: v for k, v in _point().to_dict().items() if not k.startswith(("energy", "tok_per_j"))}
    p = LoadPoint.from_dict(old)
    assert p.energy_source == "missing" and p.energy_missing_reason == "not recorded"
    assert math.isnan(p.energy_j) and math.isnan(p.tok_per_j)


def test_every_catalog_gpu_has_a_board_power() -> None:
    for name in gpu_names():
        assert 300 <= load_gpu(name).board_power_w <= 1500, name
    assert load_gpu("H200").board_power_w == 700 and load_gpu("B200").board_power_w == 1000
    assert load_gpu("GB200").board_power_w == 1200
