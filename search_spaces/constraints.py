"""Static feasibility: can a deployment be launched at all, before anything is measured?

:func:`infeasible_reason` applies the rules below in order and returns the first broken one
as ``"<constraint>: <detail>"``; the constraint names in :data:`CONSTRAINTS` let the study
count rejections by reason. The rules follow what vLLM accepts at launch, since a candidate
vLLM refuses would only burn a trial.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from serving import Deployment, Problem, WorkerGroup
from serving.launch import placement_reason
from serving.memory import fit_reason

if TYPE_CHECKING:
    from .space import SearchSpace

__all__ = [
    "CONSTRAINTS",
    "Feasibility",
    "count_feasible",
    "infeasible_reason",
    "nvlink_domain",
    "worker_reason",
]

#: Constraint names, in the order they are checked; each reason string starts with one.
CONSTRAINTS = (
    "gpu_budget",
    "nvlink_domain",
    "tp_divides_heads",
    "tp_kv_heads",
    "pp_le_layers",
    "dense_no_ep",
    "dense_no_dp",
    "ep_divides_experts",
    "vllm_ep_size",
    "placement",
    "memory",
)


def nvlink_domain(problem: Problem) -> int:
    """GPUs one tensor-parallel group may span: the NVLink domain, or the node when larger
    (a PCIe-only node such as L40S still runs TP inside the box)."""
    return max(problem.gpus_per_node, problem.gpu.nvlink_domain)


def infeasible_reason(deployment: Deployment, problem: Problem) -> str | None:
    """The first static constraint ``deployment`` breaks for ``problem``, or None.

    The returned text starts with the constraint's name from :data:`CONSTRAINTS`, e.g.
    ``"gpu_budget: 1xTP8+2xTP8 uses 24 GPUs > budget 8"``. Pure and cheap: no I/O.
    """
    if deployment.gpus() > problem.gpus:
        return f"gpu_budget: {deployment.label()} uses {deployment.gpus()} GPUs > budget {problem.gpus}"
    for role, group in deployment.groups().items():
        reason = worker_reason(role, group, problem)
        if reason is not None:
            return reason
    return fit_reason(deployment, problem)  # "memory: ..."


def worker_reason(role: str, group: WorkerGroup, problem: Problem) -> str | None:
    """Shape rules of one worker (``constraints`` minus budget and memory): parallel groups
    against the model and the interconnect, and vLLM's placement on nodes."""
    par, arch = group.parallel, problem.arch
    who = f"{role} {par.label()}"
    domain = nvlink_domain(problem)
    # A TP group all-reduces twice per layer and must stay on NVLink. Attention TP is tp; the
    # MoE layers of a worker without EP run TP over all tp*dp ranks (DPATP), so that group
    # must fit too. DP ranks with EP, and PP stages, talk less and may cross nodes.
    tp_group = max(par.tp, par.moe_tp) if arch.is_moe else par.tp
    if tp_group > domain:
        return f"nvlink_domain: {who} has a TP group of {tp_group} GPUs > NVLink domain of {domain}"
    # vLLM ModelConfig.verify_with_parallel_config: "Total number of attention heads must be
    # divisible by tensor parallel size".
    if arch.heads % par.tp:
        return f"tp_divides_heads: {who}: {arch.heads} attention heads not divisible by tp {par.tp}"
    # vLLM QKVParallelLinear (model_executor/layers/linear.py): tp >= kv heads replicates
    # each KV head divide(tp, kv_heads) times, else shards divide(kv_heads, tp) per rank;
    # divide() asserts exact division, so one must divide the other.
    if arch.kv_heads % par.tp and par.tp % arch.kv_heads:
        return (
            f"tp_kv_heads: {who}: {arch.kv_heads} KV heads and tp {par.tp}: "
            "neither divides the other (vLLM shards or replicates KV heads evenly)"
        )
    if par.pp > arch.layers:
        return f"pp_le_layers: {who}: {par.pp} pipeline stages > {arch.layers} layers"
    shape = _dense_reason(who, group) if not arch.is_moe else _moe_reason(who, group, problem)
    if shape is not None:
        return shape
    placement = placement_reason(group, problem.gpus_per_node)
    return None if placement is None else f"placement: {who}: {placement}"


def _dense_reason(who: str, group: WorkerGroup) -> str | None:
    par = group.parallel
    if par.ep != 1:
        return f"dense_no_ep: {who}: ep {par.ep} on a dense model (no experts to split)"
    if par.dp != 1:
        # Data parallelism of a dense model is more workers (count), not a wider worker.
        return f"dense_no_dp: {who}: dp {par.dp} on a dense model; use the worker count instead"
    return None


def _moe_reason(who: str, group: WorkerGroup, problem: Problem) -> str | None:
    par, arch = group.parallel, problem.arch
    # DESIGN.md's rule. vLLM itself would split unevenly (determine_expert_map gives the first
    # ranks one expert more), but the fullest rank then sets every step's pace.
    if arch.experts % par.ep:
        return f"ep_divides_experts: {who}: {arch.experts} experts not divisible by ep {par.ep}"
    # vLLM FusedMoEParallelConfig.make (model_executor/layers/fused_moe/config.py): with
    # --enable-expert-parallel the EP group is all tp*dp ranks of the worker, otherwise EP is 1;
    # so e.g. TP4xEP2 cannot be launched.
    if par.ep not in (1, par.tp * par.dp):
        return f"vllm_ep_size: {who}: ep {par.ep} must be 1 or tp*dp = {par.tp * par.dp} in vLLM"
    return None


@dataclass(frozen=True)
class Feasibility:
    """How a space's candidates fare against the static constraints for one problem."""

    total: int
    feasible: int
    rejected: dict[str, int] = field(default_factory=dict)  # constraint name -> count

    @property
    def infeasible(self) -> int:
        return self.total - self.feasible


def count_feasible(space: SearchSpace, problem: Problem) -> Feasibility:
    """Enumerate ``space`` for ``problem`` and count feasible candidates and rejections by
    constraint name (for the study's summary, and to size a grid search before running it)."""
    total = feasible = 0
    rejected: Counter[str] = Counter()
    for deployment in space.candidates(problem):
        total += 1
        reason = infeasible_reason(deployment, problem)
        if reason is None:
            feasible += 1
        else:
            rejected[reason.split(":", 1)[0]] += 1
    return Feasibility(total=total, feasible=feasible, rejected=dict(rejected.most_common()))
