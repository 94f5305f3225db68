"""The disaggregated prefill/decode router (``tuner router``), an aiohttp server.

For each OpenAI completion or chat request it follows vLLM's disagg proxy protocol (the one
vLLM's own examples implement for NixlConnector):

1. send the request to a prefill worker with ``max_tokens: 1``, ``stream: false`` and
   ``kv_transfer_params: {"do_remote_decode": true, ...}``: the prefill worker computes the
   prompt's KV cache, keeps it, and answers with ``kv_transfer_params`` saying where it is;
2. send the original request, with those ``kv_transfer_params``, to a decode worker, which
   pulls the KV cache over NIXL instead of recomputing the prompt, and stream its answer back.

Workers of each role are used round-robin. The request rewriting is two pure functions
(:func:`prefill_request`, :func:`decode_request`) so it can be tested without servers.

The same command balances aggregated replicas (``--workers``, :func:`run_balancer`): each
request goes unchanged to the next replica, so a deployment of several agg workers has one
endpoint, as a Kubernetes Service gives it in the exported manifests.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..live.deps import require

__all__ = [
    "RemoteDecode",
    "build_app",
    "build_balancer_app",
    "decode_request",
    "prefill_request",
    "run_balancer",
    "run_router",
]

log = logging.getLogger(__name__)

#: What the prefill worker is told: decode happens elsewhere; the remote fields are filled
#: in by the prefill worker's answer.
RemoteDecode: dict[str, Any] = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}
#: Seconds to wait for any byte from a worker (a long prefill under load takes a while).
READ_TIMEOUT_S = 600.0
_ROUTES = ("/v1/completions", "/v1/chat/completions")


def prefill_request(body: dict[str, Any]) -> dict[str, Any]:
    """The request for the prefill worker: one token, not streamed, KV kept for remote decode."""
    out = copy.deepcopy(body)
    out["max_tokens"] = 1
    if "max_completion_tokens" in out:
        out["max_completion_tokens"] = 1
    out["stream"] = False
    out.pop("stream_options", None)
    out["kv_transfer_params"] = dict(RemoteDecode)
    return out


def decode_request(body: dict[str, Any], kv_transfer_params: dict[str, Any] | None) -> dict[str, Any]:
    """The original request plus the prefill worker's ``kv_transfer_params``, unchanged."""
    out = copy.deepcopy(body)
    out["kv_transfer_params"] = kv_transfer_params
    return out


class _Router:
    """Round-robin pools and the shared HTTP client session of one router."""

    def __init__(self, prefill: Sequence[str], decode: Sequence[str]) -> None:
        if not prefill or not decode:
            raise ValueError("the router needs at least one prefill and one decode URL")
        self.prefill_urls = [u.rstrip("/") for u in prefill]
        self.decode_urls = [u.rstrip("/") for u in decode]
        self._prefill = itertools.cycle(self.prefill_urls)
        self._decode = itertools.cycle(self.decode_urls)
        self.session: Any = None

    async def session_ctx(self, app: Any) -> AsyncIterator[None]:
        aiohttp = require("aiohttp")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=0)  # the load generator bounds concurrency
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self.session = session
            yield
        self.session = None

    async def health(self, request: Any) -> Any:
        web = require("aiohttp.web")
        return web.json_response({"prefill": self.prefill_urls, "decode": self.decode_urls})

    async def models(self, request: Any) -> Any:
        web = require("aiohttp.web")
        async with self.session.get(f"{self.decode_urls[0]}/v1/models") as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")

    async def forward(self, request: Any) -> Any:
        """Prefill on one worker, then decode on another, streaming decode's answer back."""
        web = require("aiohttp.web")
        body = await request.json()
        path = request.path
        async with self.session.post(f"{next(self._prefill)}{path}", json=prefill_request(body)) as resp:
            if resp.status != 200:
                return web.Response(
                    status=resp.status, body=await resp.read(), content_type=resp.content_type
                )
            prefilled = await resp.json()
        params = prefilled.get("kv_transfer_params")
        if params is None:
            log.warning("prefill answered without kv_transfer_params: decode will recompute the prompt")
        async with self.session.post(
            f"{next(self._decode)}{path}", json=decode_request(body, params)
        ) as resp:
            return await _stream_back(request, resp)


async def _stream_back(request: Any, resp: Any) -> Any:
    """Relay a worker's answer to the client as it arrives (token streams stay streams)."""
    web = require("aiohttp.web")
    out = web.StreamResponse(status=resp.status)
    out.content_type = resp.content_type
    await out.prepare(request)
    async for data in resp.content.iter_any():
        await out.write(data)
    await out.write_eof()
    return out


class _Balancer(_Router):
    """Round-robin over aggregated replicas; requests pass unchanged."""

    def __init__(self, workers: Sequence[str]) -> None:
        if not workers:
            raise ValueError("the balancer needs at least one worker URL")
        super().__init__(workers, workers)
        self._workers = itertools.cycle(self.decode_urls)

    async def health(self, request: Any) -> Any:
        web = require("aiohttp.web")
        return web.json_response({"workers": self.decode_urls})

    async def forward(self, request: Any) -> Any:
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with self.session.post(
            f"{next(self._workers)}{request.path}", data=body, headers=headers
        ) as resp:
            return await _stream_back(request, resp)


def build_app(prefill: Sequence[str], decode: Sequence[str]) -> Any:
    """The aiohttp application routing to ``prefill`` and ``decode`` base URLs."""
    return _app(_Router(prefill, decode))


def build_balancer_app(workers: Sequence[str]) -> Any:
    """The aiohttp application balancing over aggregated replicas' base URLs."""
    return _app(_Balancer(workers))


def _app(router: _Router) -> Any:
    web = require("aiohttp.web")
    app = web.Application(client_max_size=64 * 1024**2)  # long prompts as token-ID lists
    app.cleanup_ctx.append(router.session_ctx)
    app.router.add_get("/health", router.health)
    app.router.add_get("/v1/models", router.models)
    for route in _ROUTES:
        app.router.add_post(route, router.forward)
    return app


def run_router(*, host: str, port: int, prefill: Sequence[str], decode: Sequence[str]) -> None:
    """Serve until SIGINT/SIGTERM (aiohttp's ``run_app`` handles both)."""
    web = require("aiohttp.web")
    log.info("router on %s:%d: prefill %s, decode %s", host, port, list(prefill), list(decode))
    web.run_app(build_app(prefill, decode), host=host, port=port, print=None, access_log=None)


def run_balancer(*, host: str, port: int, workers: Sequence[str]) -> None:
    """Serve the agg replicas' balancer until SIGINT/SIGTERM."""
    web = require("aiohttp.web")
    log.info("balancer on %s:%d: workers %s", host, port, list(workers))
    web.run_app(build_balancer_app(workers), host=host, port=port, print=None, access_log=None)
