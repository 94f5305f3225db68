"""scalar_dict: the fast asdict of the all-scalar records, pinned against asdict."""

from __future__ import annotations

from dataclasses import asdict, fields

from serving import EngineKnobs, LoadPoint, Parallelism
from serving.scalars import scalar_dict


def test_scalar_dict_is_asdict_of_the_all_scalar_records() -> None:
    point = LoadPoint.from_percentiles(
        concurrency=4,
        gpus=2,
        ttft_ms=(100.0, 150.0, 200.0),
        tpot_ms=(10.0, 12.0, 14.0),
        itl_ms=(10.0, 12.0, 14.0),
        e2e_ms=(1000.0, 1200.0, 1400.0),
        tokens_s=800.0,
        output_tokens_s=400.0,
        requests_s=0.4,
        num_requests=8,
    ).with_energy(10.0, seconds=2.0, source="estimated")
    for record in (point, Parallelism(tp=2, dp=2, ep=4), EngineKnobs(max_num_seqs=64)):
        assert all(f.type in ("int", "float", "str", "bool") for f in fields(record))
        assert list(scalar_dict(record).items()) == list(asdict(record).items())
    assert point.to_dict() == asdict(point)
