"""Problems matching each preset, built from the serving catalogs."""

from __future__ import annotations

import pytest

from serving import Problem, Workload, load_gpu, load_model


def make_problem(
    model: str,
    gpu: str,
    *,
    precision: str = "bf16",
    gpus: int = 8,
    gpus_per_node: int = 8,
    isl: int = 1024,
    osl: int = 1024,
) -> Problem:
    """A problem with a concurrency ladder up to 256."""
    workload = Workload(isl=isl, osl=osl, concurrency=(1, 4, 16, 64, 256))
    return Problem(
        arch=load_model(model),
        gpu=load_gpu(gpu),
        precision=precision,
        workload=workload,
        gpus=gpus,
        gpus_per_node=gpus_per_node,
    )


#: The example problem of each preset.
PRESET_PROBLEMS = {
    "dense-single-node": make_problem("Qwen3-32B", "H200", isl=4000, osl=1000),
    "moe-multi-node": make_problem("DeepSeek-R1", "GB200", precision="fp8", gpus=64, gpus_per_node=4),
    "small": make_problem("Llama-3.1-8B", "H100", gpus=1),
}


@pytest.fixture(params=sorted(PRESET_PROBLEMS))
def preset(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
