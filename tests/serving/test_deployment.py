"""Deployment labels, GPU counting and serialisation."""

from __future__ import annotations

import pytest

from serving import ConfigError, Deployment, EngineKnobs, Parallelism, WorkerGroup


@pytest.mark.parametrize(
    ("par", "label", "gpus"),
    [
        (Parallelism(tp=8), "TP8", 8),
        (Parallelism(tp=8, ep=8), "TEP8", 8),
        (Parallelism(dp=8, ep=8), "DEP8", 8),
        (Parallelism(dp=8), "DPATP8", 8),
        (Parallelism(tp=4, ep=2), "TP4xEP2", 4),
        (Parallelism(tp=4, pp=2), "TP4xPP2", 8),
        (Parallelism(tp=2, dp=4, ep=8), "TP2xDP4xEP8", 8),
        (Parallelism(), "TP1", 1),
    ],
)
def test_parallelism_labels(par: Parallelism, label: str, gpus: int) -> None:
    assert par.label() == label
    assert par.gpus == gpus


def test_ep_must_divide_tp_dp() -> None:
    with pytest.raises(ConfigError, match="ep: got 3; must divide tp\\*dp = 8"):
        Parallelism(tp=8, ep=3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_parallel_sizes_positive_ints(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"tp: .*positive integer"):
        Parallelism(tp=bad)  # type: ignore[arg-type]


def test_agg_label_and_gpus_with_replicas() -> None:
    dep = Deployment("agg", agg=WorkerGroup(Parallelism(tp=2), count=4))
    assert dep.label() == "4xTP2"
    assert dep.gpus() == 8


def test_round_trip_and_key() -> None:
    dep = Deployment(
        "disagg",
        prefill=WorkerGroup(Parallelism(dp=2, ep=2), 2, EngineKnobs(max_num_batched_tokens=16384)),
        decode=WorkerGroup(Parallelism(dp=8, ep=8), 1, EngineKnobs(max_num_seqs=512)),
    )
    again = Deployment.from_dict(dep.to_dict())
    assert again == dep
    assert again.key() == dep.key()
    assert dep.gpus() == 12 and dep.label() == "2xDEP2+1xDEP8"


def test_mode_needs_matching_groups() -> None:
    with pytest.raises(ConfigError, match="disagg needs"):
        Deployment("disagg", agg=WorkerGroup(Parallelism()))
    with pytest.raises(ConfigError, match="allowed: agg, disagg"):
        Deployment("hybrid", agg=WorkerGroup(Parallelism()))  # type: ignore[arg-type]


def test_unknown_worker_key_rejected() -> None:
    with pytest.raises(ConfigError, match=r"decode\.tpp: .*unknown key"):
        Deployment.from_dict({"mode": "disagg", "prefill": {"tp": 1}, "decode": {"tpp": 2}})
