"""The launch plan: placement, GPU accounting, argv built from the flag table."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from serving import ConfigError, Deployment, Parallelism, Problem, WorkerGroup, Workload, load_gpu, load_model
from serving.deployment import EngineKnobs
from serving.launch import LaunchPlan, WorkerLaunch, plan_launch, replace_flag_value

WORKLOAD = Workload(isl=1024, osl=1024, concurrency=(1, 8))


def problem(gpu: str = "H200", gpus_per_node: int = 8, workload: Workload = WORKLOAD) -> Problem:
    return Problem(
        arch=load_model("DeepSeek-R1"),
        gpu=load_gpu(gpu),
        precision="fp8",
        workload=workload,
        gpus=64,
        gpus_per_node=gpus_per_node,
    )


def agg(par: Parallelism, count: int = 1) -> Deployment:
    return Deployment(mode="agg", agg=WorkerGroup(par, count))


def disagg(p: Parallelism, p_count: int, d: Parallelism, d_count: int) -> Deployment:
    return Deployment(mode="disagg", prefill=WorkerGroup(p, p_count), decode=WorkerGroup(d, d_count))


#: The topologies every plan and export test runs: label -> (deployment, problem).
TOPOLOGIES: dict[str, tuple[Deployment, Problem]] = {
    "TP8": (agg(Parallelism(tp=8)), problem()),
    "DEP8": (agg(Parallelism(dp=8, ep=8)), problem()),
    "1xDEP4+1xDEP8": (disagg(Parallelism(dp=4, ep=4), 1, Parallelism(dp=8, ep=8), 1), problem()),
    "2xDEP2+1xDEP8": (disagg(Parallelism(dp=2, ep=2), 2, Parallelism(dp=8, ep=8), 1), problem()),
    "DEP16": (agg(Parallelism(dp=16, ep=16)), problem()),
    "TEP16": (agg(Parallelism(tp=16, ep=16)), problem("GB200", gpus_per_node=4)),
}


def value(argv: tuple[str, ...], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("label", list(TOPOLOGIES))
def test_plan_gpus_add_up_and_never_overlap(label: str) -> None:
    deployment, prob = TOPOLOGIES[label]
    plan = plan_launch(deployment, prob)
    assert deployment.label() == label == plan.label
    assert plan.gpus() == deployment.gpus()
    slots = Counter((w.node, gpu) for w in plan.workers for gpu in w.gpu_ids)
    assert max(slots.values()) == 1, "two processes planned on one GPU"
    for w in plan.workers:
        assert all(0 <= g < prob.gpus_per_node for g in w.gpu_ids)
        assert w.env_dict()["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, w.gpu_ids))
    # One leader per worker, and its argv starts the server on the model.
    for role, group in deployment.groups().items():
        leaders = plan.leaders(role)
        assert len(leaders) == group.count
        for leader in leaders:
            assert leader.argv[:3] == ("vllm", "serve", plan.model)
            assert len(plan.ranks(role, leader.worker)) == leader.nodes


@pytest.mark.parametrize("label", list(TOPOLOGIES))
def test_ports_unique_per_node(label: str) -> None:
    plan = plan_launch(*TOPOLOGIES[label])
    for node in range(len(plan.nodes)):
        ports = [w.port for w in plan.on_node(node) if w.port is not None]
        if plan.router is not None and node == 0:
            ports.append(plan.router.port)
        assert len(ports) == len(set(ports))


def test_dep8_flags() -> None:
    leader = plan_launch(*TOPOLOGIES["DEP8"]).workers[0]
    assert value(leader.argv, "--data-parallel-size") == "8"
    assert "--enable-expert-parallel" in leader.argv
    assert "--tensor-parallel-size" not in leader.argv
    assert value(leader.argv, "--max-model-len") == "2048"
    assert value(leader.argv, "--max-num-seqs") == "256"
    assert "--enable-chunked-prefill" in leader.argv
    assert "--kv-transfer-config" not in leader.argv  # agg


def test_tp8_flags() -> None:
    leader = plan_launch(*TOPOLOGIES["TP8"]).workers[0]
    assert value(leader.argv, "--tensor-parallel-size") == "8"
    assert "--enable-expert-parallel" not in leader.argv
    assert "--data-parallel-size" not in leader.argv
    assert leader.gpu_ids == tuple(range(8))


@pytest.mark.parametrize(
    "par", [Parallelism(tp=4, dp=2, ep=2), Parallelism(tp=8, ep=4), Parallelism(dp=8, ep=2)]
)
def test_ep_vllm_cannot_express_raises(par: Parallelism) -> None:
    with pytest.raises(ConfigError, match="ep"):
        plan_launch(agg(par), problem())


def test_disagg_kv_roles_router_and_placement() -> None:
    plan = plan_launch(*TOPOLOGIES["2xDEP2+1xDEP8"])
    roles = {w.role: json.loads(value(w.argv, "--kv-transfer-config"))["kv_role"] for w in plan.workers}
    assert roles == {"prefill": "kv_producer", "decode": "kv_consumer"}
    prefill = plan.leaders("prefill")
    assert [(w.node, w.gpu_ids) for w in prefill] == [(0, (0, 1)), (0, (2, 3))]
    # Decode (8 GPUs) does not fit the 4 left on node 0: it starts a fresh node.
    assert [(w.node, w.gpu_ids) for w in plan.leaders("decode")] == [(1, tuple(range(8)))]
    # Two workers on one node need distinct NIXL side-channel port ranges.
    nixl = [int(w.env_dict()["VLLM_NIXL_SIDE_CHANNEL_PORT"]) for w in prefill]
    assert nixl[1] - nixl[0] >= len(prefill[0].gpu_ids)
    assert plan.router is not None
    assert plan.router.argv[:2] == ("tuner", "router")
    assert plan.router.prefill_urls == tuple(w.url for w in prefill)
    assert len(plan.router.decode_urls) == 1
    assert plan.url == f"http://{plan.nodes[0]}:8000"


def test_multinode_data_parallel_uses_headless_followers() -> None:
    plan = plan_launch(*TOPOLOGIES["DEP16"])
    leader, follower = plan.ranks("agg", 0)
    assert (leader.node, follower.node) == (0, 1)
    for w in (leader, follower):
        assert value(w.argv, "--data-parallel-size") == "16"
        assert value(w.argv, "--data-parallel-size-local") == "8"
        assert value(w.argv, "--data-parallel-address") == plan.nodes[0]
        assert value(w.argv, "--data-parallel-rpc-port") == value(leader.argv, "--data-parallel-rpc-port")
        assert "--enable-expert-parallel" in w.argv
    assert "--headless" in follower.argv and "--headless" not in leader.argv
    assert value(follower.argv, "--data-parallel-start-rank") == "8"
    assert follower.port is None and "--port" not in follower.argv


def test_tensor_parallel_across_nodes_uses_ray() -> None:
    plan = plan_launch(*TOPOLOGIES["TEP16"])
    ranks = plan.ranks("agg", 0)
    assert [w.node for w in ranks] == [0, 1, 2, 3]
    leader = ranks[0]
    assert value(leader.argv, "--tensor-parallel-size") == "16"
    assert value(leader.argv, "--distributed-executor-backend") == "ray"
    assert leader.prelude and leader.prelude[0][:3] == ("ray", "start", "--head")
    for w in ranks[1:]:
        assert w.argv[:2] == ("ray", "start") and "--block" in w.argv
        assert value(w.argv, "--address").startswith(plan.nodes[0] + ":")
    assert any("Ray" in note for note in plan.notes)


def test_cpu_devices_drop_cuda_and_add_vllm_cpu_env() -> None:
    deployment = disagg(Parallelism(), 1, Parallelism(), 1)
    plan = plan_launch(deployment, problem(gpus_per_node=2), devices="cpu", node_hosts=["127.0.0.1"])
    for w in plan.workers:
        env = w.env_dict()
        assert "CUDA_VISIBLE_DEVICES" not in env
        assert env["VLLM_TARGET_DEVICE"] == "cpu" and env["UCX_NET_DEVICES"] == "lo"
        assert json.loads(value(w.argv, "--kv-transfer-config"))["kv_buffer_device"] == "cpu"
    binds = [w.env_dict()["VLLM_CPU_OMP_THREADS_BIND"] for w in plan.workers]
    assert binds == ["0", "1"]  # one core each, as the notes require


def test_model_override_and_served_name() -> None:
    plan = plan_launch(*TOPOLOGIES["TP8"], model="/models/r1", served_model_name="r1", base_port=9000)
    argv = plan.workers[0].argv
    assert argv[:3] == ("vllm", "serve", "/models/r1")
    assert value(argv, "--served-model-name") == "r1" and value(argv, "--port") == "9000"
    assert plan.served_model_name == "r1"


@pytest.mark.parametrize(
    ("isl", "osl", "ratio", "expected"),
    [(1000, 1000, 0.0, 2048), (1024, 1024, 0.0, 2048), (8000, 1000, 0.5, 13568)],
)
def test_max_model_len_rounds_up(isl: int, osl: int, ratio: float, expected: int) -> None:
    wl = Workload(isl=isl, osl=osl, concurrency=(1,), range_ratio=ratio)
    plan = plan_launch(agg(Parallelism(tp=8)), problem(workload=wl))
    assert value(plan.workers[0].argv, "--max-model-len") == str(expected)


def test_worker_of_partial_nodes_is_rejected() -> None:
    with pytest.raises(ConfigError, match="whole nodes"):
        plan_launch(agg(Parallelism(tp=4, dp=3)), problem())


def test_chunked_prefill_off_needs_batch_of_a_whole_prompt() -> None:
    knobs = EngineKnobs(enable_chunked_prefill=False, max_num_batched_tokens=1024)
    deployment = Deployment(mode="agg", agg=WorkerGroup(Parallelism(tp=8), 1, knobs))
    with pytest.raises(ConfigError, match="max_num_batched_tokens"):
        plan_launch(deployment, problem())


def test_replace_flag_value_and_frozen_plan() -> None:
    plan: LaunchPlan = plan_launch(*TOPOLOGIES["TP8"])
    w: WorkerLaunch = plan.workers[0]
    assert value(replace_flag_value(w.argv, "--port", "1"), "--port") == "1"
    with pytest.raises(ValueError):
        replace_flag_value(w.argv, "--nope", "1")
    with pytest.raises(AttributeError):
        w.port = 1  # type: ignore[misc]
