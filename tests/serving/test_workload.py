"""Workload lengths: each distribution, the dataset files, and what memory sizing reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving import ConfigError
from serving.dataset import read_dataset
from serving.lengths import LengthDist
from tuner.spec import _workload

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workloads"


@pytest.mark.parametrize(
    ("spec", "mean", "low", "high"),
    [
        ({"distribution": "fixed", "mean": 512}, 512, 512, 512),
        ({"distribution": "uniform", "min": 100, "max": 300}, 200, 100, 300),
        ({"distribution": "normal", "mean": 1000, "std": 200, "min": 1, "max": 5000}, 1000, 1, 5000),
        ({"distribution": "lognormal", "mean": 1000, "std": 800, "min": 1, "max": 100_000}, 1000, 1, 100_000),
    ],
)
def test_each_distribution_mean_bounds_and_draws_agree(
    spec: dict[str, object], mean: float, low: int, high: int
) -> None:
    wl = _workload({"lengths": {"input": spec}, "osl": 10})
    dist = wl.inputs
    assert wl.isl == pytest.approx(mean, rel=0.01)
    assert dist.min == low and dist.max == high and wl.longest == high + 10
    draws = np.asarray(dist.sample(np.random.default_rng(0), 20_000))
    assert draws.min() >= low and draws.max() <= high
    assert draws.mean() == pytest.approx(dist.mean_tokens, rel=0.02)
    assert (dist.cv2 == 0.0) == (spec["distribution"] == "fixed")


def test_truncation_moves_the_mean_and_caps_the_longest_request() -> None:
    wl = _workload(
        {
            "lengths": {"output": {"distribution": "normal", "mean": 100, "std": 100, "min": 80, "max": 150}},
            "isl": 10,
        }
    )
    assert 110 < wl.osl < 120  # [80, 150] cuts more of the left tail: the mean rises
    assert wl.longest == 160
    assert wl.outputs.quantile(0.999) <= 150


def test_range_ratio_keeps_vllm_semantics() -> None:
    wl = _workload({"isl": 1000, "osl": 100, "range_ratio": 0.5})
    assert (wl.inputs.min, wl.inputs.max) == (500, 1500)
    assert (wl.outputs.min, wl.outputs.max) == (50, 150)
    assert (wl.isl, wl.osl, wl.longest) == (1000, 100, 1650)
    assert LengthDist.from_ratio(1000, 0.0).distribution == "fixed"


def test_example_files_parse_and_give_their_means() -> None:
    chat = _workload({"file": str(EXAMPLES / "chat.csv")})
    rows = read_dataset(EXAMPLES / "chat.csv")
    assert len(rows) == 500 and rows[0].arrival_s is None
    assert chat.isl == round(np.mean([r.input_tokens for r in rows]))
    assert chat.longest == max(r.input_tokens + r.output_tokens for r in rows)
    trace = _workload({"file": str(EXAMPLES / "trace.jsonl"), "arrivals": "trace"})
    assert trace.open_loop and len(trace.rates) == 1
    assert 4.0 < trace.rates[0] < 6.0  # 4 req/s with a third at 8 req/s
    assert trace.arrival_cv2 > 1.0  # the burst makes it burstier than Poisson


def test_the_round_trip_through_to_dict_is_the_same_workload() -> None:
    for data in (
        {"isl": 100, "osl": 20, "range_ratio": 0.2},
        {"lengths": {"input": {"distribution": "lognormal", "mean": 900, "std": 400}}, "osl": 50},
        {"file": str(EXAMPLES / "chat.csv"), "request_rates": [1, 2]},
        {"isl": 10, "osl": 10, "request_rates": [0.5], "burstiness": 0.5, "shared_prefix": 0.25},
    ):
        wl = _workload(data)
        assert _workload(wl.to_dict()) == wl


T1 = '{"input_tokens": 5, "output_tokens": 3, "arrival_s": 1}\n'
T2 = '{"input_tokens": 5, "output_tokens": 3, "arrival_s": 2}'


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        (
            "a.csv",
            "input_tokens,output_tokens\n10,5\n10,x\n",
            "column 'output_tokens': got '{p} line 3'; must be an integer >= 1 (got 'x')",
        ),
        ("a.csv", "input_tokens,output\n10,5\n", "column 'output': got '{p} line 1'; unknown column"),
        ("a.csv", "input_tokens\n10\n", "column 'output_tokens': got '{p} line 1'; required"),
        ("a.csv", "input_tokens,output_tokens\n10,5,7\n", "got '{p} line 2'; must have 2 cells"),
        ("a.csv", "input_tokens,output_tokens\n0,5\n", "must be an integer >= 1 (got '0')"),
        ("a.csv", "input_tokens,output_tokens\n2.5,5\n", "must be an integer >= 1 (got '2.5')"),
        ("a.csv", "input_tokens,output_tokens\n", "must hold at least one request"),
        ("a.csv", "", "must start with a header line"),
        (
            "a.jsonl",
            '{"input_tokens": 5, "output_tokens": 3}\n[1]\n',
            "got '{p} line 2'; must be one JSON object",
        ),
        (
            "a.jsonl",
            '{"input_tokens": 5, "output_tokens": 3}\n{"input_tokens": 5\n',
            "line 2'; must be one JSON object",
        ),
        ("a.jsonl", '{"input_tokens": 5, "output_tokens": true}\n', "must be an integer >= 1 (got True)"),
        (
            "a.jsonl",
            T2 + "\n\n" + T1,
            "column 'arrival_s': got '{p} line 3'; must not decrease (1 after 2)",
        ),
        (
            "a.jsonl",
            T2 + "\n" + '{"input_tokens": 5, "output_tokens": 3}\n',
            "line 2'; must be given on every row or on none",
        ),
        (
            "a.jsonl",
            '{"input_tokens": 5, "output_tokens": 3, "arrival_s": -1}\n',
            "must be a finite number of seconds >= 0",
        ),
        ("a.txt", "input_tokens,output_tokens\n1,1\n", "must be a .csv or .jsonl file"),
    ],
)
def test_bad_dataset_files_name_the_column_file_and_line(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(ConfigError) as err:
        read_dataset(path)
    assert str(err.value).startswith("workload.file")
    assert fragment.format(p=path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workload\.file: got .*must be an existing"):
        read_dataset(tmp_path / "none.csv")
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"input_tokens,output_tokens\n1,\xff\n")
    with pytest.raises(ConfigError, match="must be UTF-8 text"):
        read_dataset(bad)


def test_memory_sizing_reads_the_longest_request() -> None:
    """max_model_len and the start check use the longest request, not the mean one."""
    from serving import Problem, load_gpu, load_model
    from serving.launch import _max_model_len

    arch = load_model("meta-llama/Llama-3.1-8B")
    wl = _workload(
        {
            "lengths": {"input": {"distribution": "lognormal", "mean": 1000, "std": 900, "max": 20_000}},
            "osl": 100,
        }
    )
    problem = Problem(arch=arch, gpu=load_gpu("H100"), precision="bf16", workload=wl, gpus=1, gpus_per_node=1)
    assert _max_model_len(problem) >= 20_100 > 4 * wl.seq_len
