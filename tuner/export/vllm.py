"""Plain ``vllm serve`` launch scripts: one ``node-N.sh`` per node, ``router.sh`` for disagg."""

from __future__ import annotations

import shlex

from serving.launch import LaunchPlan, WorkerLaunch

from .base import ExportContext

__all__ = ["VllmExporter"]


class VllmExporter:
    """Shell scripts with the exact commands of the launch plan.

    Each ``node-N.sh`` starts every process planned on node N in the background (one log
    file each, under ``$LOG_DIR``) and waits for them. HF_TOKEN is read from the caller's
    environment, never written.
    """

    name = "vllm"

    def render(self, plan: LaunchPlan, context: ExportContext) -> dict[str, str]:
        files = {f"node-{i}.sh": self._node_script(plan, context, i) for i in range(len(plan.nodes))}
        if plan.router is not None:
            files["router.sh"] = (
                "#!/usr/bin/env bash\n"
                + context.header(plan)
                + (
                    "# The balancer: one endpoint for the aggregated replicas, round-robin.\n"
                    if plan.router.balances
                    else "# The disagg router: prefill with max_tokens=1, then decode with the KV handles.\n"
                )
                + "set -euo pipefail\n"
                + "exec "
                + _continued(plan.router.argv)
                + "\n"
            )
        files["README.md"] = self._readme(plan, context)
        return files

    def _node_script(self, plan: LaunchPlan, context: ExportContext, node: int) -> str:
        lines = [
            "#!/usr/bin/env bash",
            context.header(plan).rstrip("\n"),
            f"# Node {node} ({plan.nodes[node]}). Needs HF_TOKEN in the environment for gated models.",
            "set -euo pipefail",
            'LOG_DIR="${LOG_DIR:-logs}"',
            'mkdir -p "$LOG_DIR"',
            "",
        ]
        for worker in plan.on_node(node):
            lines += _worker_block(worker)
        lines += ["wait", ""]
        return "\n".join(lines)

    def _readme(self, plan: LaunchPlan, context: ExportContext) -> str:
        rows = [
            f"| {w.role} | {w.worker} | {w.rank} | {plan.nodes[w.node]} | {','.join(map(str, w.gpu_ids))} "
            f"| {w.port if w.port is not None else '-'} |"
            for w in plan.workers
        ]
        notes = "".join(f"- {n}\n" for n in plan.notes)
        front = f"`{plan.url}`"
        return (
            f"# {plan.label} ({plan.gpus()} GPUs)\n\n"
            f"Model `{plan.model}` served as `{plan.served_model_name}`, {plan.mode} mode, "
            f"{len(plan.nodes)} node(s) of {plan.gpus_per_node} GPUs.\n\n"
            "Run `node-N.sh` on node N (every node; leaders before their followers do no harm, "
            "vLLM waits for its ranks)"
            + (", then `router.sh` on node 0" if plan.router else "")
            + f". Clients talk to {front} (OpenAI API)"
            + (
                f": `router.sh` balances requests over the {len(plan.router.worker_urls)} replicas.\n"
                if plan.router is not None and plan.router.balances
                else ".\n"
            )
            + "Export `HF_TOKEN` first for gated models; logs go to `$LOG_DIR` (default `logs/`).\n\n"
            "| role | worker | rank | node | GPUs | port |\n| --- | --- | --- | --- | --- | --- |\n"
            + "\n".join(rows)
            + "\n"
            + (f"\nNotes:\n\n{notes}" if notes else "")
        )


def _worker_block(worker: WorkerLaunch) -> list[str]:
    log = f"$LOG_DIR/{worker.role}-{worker.worker}-rank{worker.rank}.log"
    gpus = ",".join(map(str, worker.gpu_ids))
    head = f"# {worker.role} worker {worker.worker}, node rank {worker.rank}/{worker.nodes}: GPUs {gpus}"
    if worker.port is not None:
        head += f", port {worker.port}"
    lines = [head]
    lines += [_continued(cmd) for cmd in worker.prelude]
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in worker.env)
    lines.append(f"env {env} \\\n  " + _continued(worker.argv) + f' \\\n  > "{log}" 2>&1 &')
    lines.append("")
    return lines


def _continued(argv: tuple[str, ...]) -> str:
    """``argv`` quoted, one flag (with its value) per continued line."""
    parts: list[str] = []
    for token in argv:
        quoted = shlex.quote(token)
        if token.startswith("--") or not parts:
            parts.append(quoted)
        else:
            parts[-1] += " " + quoted
    return " \\\n    ".join(parts)
