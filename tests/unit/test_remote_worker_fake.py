"""``RemoteWorker`` against a tiny fake vLLM OpenAI server (engine-free; the real servers are
tested in ``tests/integration/test_remote_servers.py``).

The fake speaks just enough HTTP/1.1 (keep-alive) for ``/health``, ``/v1/models``, ``/metrics``
and non-streaming ``/v1/completions``, and can drop a connection without answering, as a server
does when it closes an idle keep-alive connection just as the client reuses it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from helium_lc.engine.remote_worker import RemoteWorker, RemoteWorkerConfig
from helium_lc.engine.types import GenerationRequest, SamplingSpec, WorkerDiedError

METRICS = ('vllm:cache_config_info{block_size="16",num_gpu_blocks="64",enable_prefix_caching="True"} 1.0\n')


class FakeServer:
    """``drop_next``: completions to answer by closing the connection; ``healthy``: /health's answer."""

    def __init__(self) -> None:
        self.drop_next = 0
        self.healthy = True
        self.completions: list[dict[str, Any]] = []
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def __aenter__(self) -> "FakeServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next((int(v) for k, _, v in (ln.partition(": ") for ln in lines[1:])
                               if k.lower() == "content-length"), 0)
                body = json.loads(await reader.readexactly(length)) if length else None
                status, payload = self._answer(method, path, body)
                if status is None:  # drop the connection without a response
                    writer.close()
                    return
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def _answer(self, method: str, path: str, body: Any) -> tuple[int | None, Any]:
        if path == "/health":
            return (200 if self.healthy else 503), ""
        if path == "/v1/models":
            return 200, {"data": [{"id": "fake", "root": "fake", "max_model_len": 2048}]}
        if path == "/metrics":
            return 200, METRICS
        if path == "/v1/completions":
            if self.drop_next:
                self.drop_next -= 1
                return None, None
            self.completions.append(body)
            return 200, {"choices": [{"text": "ok", "token_ids": [7, 8], "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": len(body["prompt"]), "prompt_tokens_details": {"cached_tokens": 0}}}
        return 404, {"error": {"message": f"no route {method} {path}"}}


def _request() -> GenerationRequest:
    return GenerationRequest(tuple(range(20)), SamplingSpec(max_tokens=2))


def test_a_dropped_connection_to_a_healthy_server_is_sent_again_not_a_death() -> None:
    async def main() -> None:
        async with FakeServer() as server:
            worker = RemoteWorker(0, RemoteWorkerConfig(server.url))
            await worker.start()
            assert (worker.block_size, worker.kv_capacity_tokens) == (16, 1024)
            server.drop_next = 1
            result = await worker.generate(_request())
            assert (result.text, result.token_ids) == ("ok", (7, 8))
            assert worker.alive and len(server.completions) == 1  # answered once, by the second try
            # twice in a row: the request fails and the worker is marked down, as for a dead server
            server.drop_next = 2
            with pytest.raises(WorkerDiedError, match="is down"):
                await worker.generate(_request())
            assert not worker.alive
            await worker.shutdown()

    asyncio.run(main())


def test_a_dropped_connection_to_an_unhealthy_server_marks_it_down_at_once() -> None:
    async def main() -> None:
        async with FakeServer() as server:
            worker = RemoteWorker(0, RemoteWorkerConfig(server.url))
            await worker.start()
            server.drop_next, server.healthy = 1, False
            with pytest.raises(WorkerDiedError, match="is down"):
                await worker.generate(_request())
            assert not worker.alive and server.completions == []  # never retried
            await worker.shutdown()

    asyncio.run(main())
