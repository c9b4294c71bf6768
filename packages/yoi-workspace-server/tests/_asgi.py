"""In-process Backends for the unit tests: a :class:`~yoi_workspace_server.backend.Backend`
whose ASGI app is called through ``httpx.ASGITransport`` (no socket), and real Runtimes
served over HTTP on a loopback socket (uvicorn in the test's event loop) to register as
remotes."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

from worker_runtime import CreateWorkerRequest, InputRequest, Limits, Runtime
from worker_runtime.http import HttpSettings, create_app
from worker_runtime.store.fs import FsRuntimeStore
from yoi_workspace_server.backend import Backend
from yoi_workspace_server.registry import RemoteLimits  # noqa: F401
from yoi_workspace_server.settings import BackendSettings, LocalStore  # noqa: F401

TOKEN = "browser-token-0123456789abcdef"
RUNTIME_TOKEN = "remote-runtime-token-0123456789"
EMB = "/api/runtimes/backend-internal"


def settings(**fields: Any) -> BackendSettings:
    """Settings of an in-memory Backend (no data dir) unless ``fields`` say otherwise."""
    return replace(BackendSettings(token=TOKEN, poll_s=0.2), **fields)


@asynccontextmanager
async def backend(**fields: Any) -> AsyncIterator[tuple[Backend, httpx.AsyncClient]]:
    """A Backend of :func:`settings` and a client of its app, signed in with the token. The
    client keeps every response's headers and body in ``client.seen`` (for leak scans)."""
    seen: list[str] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        seen.append(str(dict(response.headers)) + response.text)

    async with Backend(settings(**fields)) as b:
        transport = httpx.ASGITransport(app=b.app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1",
            headers=headers,
            event_hooks={"response": [record]},
        ) as client:
            client.seen = seen  # type: ignore[attr-defined]
            yield b, client


class _Server(uvicorn.Server):
    """uvicorn without signal handling: the test owns the process."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


@asynccontextmanager
async def served(runtime: Runtime, token: str = RUNTIME_TOKEN, port: int = 0) -> AsyncIterator[str]:
    """``runtime``'s HTTP API on a loopback port (0: a free one); yields its base URL."""
    async with served_app(create_app(runtime, HttpSettings(token=token)), port) as url:
        yield url


@asynccontextmanager
async def served_app(app: Any, port: int = 0) -> AsyncIterator[str]:
    """An ASGI app on a loopback port (0: a free one); yields its base URL. Open connections
    are cut when it stops."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                for connection in list(server.server_state.connections):
                    connection.transport.abort()
                server.should_exit = True
    finally:
        sock.close()


@asynccontextmanager
async def remote_runtime(runtime_id: str = "remote-a") -> AsyncIterator[tuple[Runtime, str]]:
    """A Runtime (in memory) served over HTTP: ``(runtime, base_url)``."""
    limits = Limits(shutdown_grace_s=0.2)
    async with Runtime(runtime_id=runtime_id, limits=limits) as rt, served(rt) as url:
        yield rt, url


async def write_store(root: Path, runtime_id: str, words: str) -> str:
    """A store root left behind by a Runtime that has stopped: one Worker ``old`` with one
    turn on ``words``; its worker_id."""
    async with Runtime(runtime_id=runtime_id, store=FsRuntimeStore(root, fsync="never")) as rt:
        w = await rt.create_worker(CreateWorkerRequest(name="old"))
        await rt.send_input(w.worker_ref, InputRequest(content=words))
        with anyio.fail_after(10):
            while (await rt.get_worker(w.worker_ref)).transcript_len < 2:
                await anyio.sleep(0.01)
        return w.worker_id


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return dict(body)


async def register(client: httpx.AsyncClient, runtime_id: str, url: str, **more: Any) -> Any:
    body = {"runtime_id": runtime_id, "base_url": url, "token": RUNTIME_TOKEN, **more}
    return await client.post("/api/runtimes", json=body)


async def sse(
    client: httpx.AsyncClient, path: str, until: str, **params: str
) -> list[dict[str, Any]]:
    """Read a Backend SSE stream until an event of kind ``until`` (or its end): each
    message's ``id`` and decoded ``data``."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with anyio.fail_after(20):
        async with client.stream("GET", path, params=params) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    current["id"] = line[4:]
                elif line.startswith("data: "):
                    current["data"] = json.loads(line[6:])
                elif line == "" and "data" in current:
                    events.append(current)
                    current = {}
                    if events[-1]["data"]["kind"] == until:
                        break
    return events
