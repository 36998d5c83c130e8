"""A recording HTTP proxy between one operator process and the API server: an audit of that process's
requests, and a network partition that can be switched on.

The operator talks plain HTTP to 127.0.0.1 (its kubeconfig points here, with the admin token); the proxy
forwards every request over TLS to the real API server, watches streamed chunk by chunk. It records each
request: when it arrived, method, path, when and with which status and resourceVersion it completed, and
whether it ever reached the API server. ``cut()`` partitions the process from the API server without
stopping it: new requests are held (never forwarded), and watch streams go silent; ``heal()`` lets traffic
through again, and requests held during the partition are dropped (answered 503, never forwarded) as
packets lost in a partition would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass
class Request:
    started: float  # wall clock (time.time) when the proxy received it
    method: str
    path: str
    ended: float | None = None
    status: int | None = None
    resource_version: int | None = None  # of the object a write returned
    forwarded: bool = False  # reached the API server
    held: bool = False  # arrived during a partition
    body: bytes = b""  # of a write, the first 400 bytes (what was written)

    @property
    def write(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def landed(self) -> bool:
        """A write the API server accepted."""
        return self.write and self.forwarded and self.status is not None and 200 <= self.status < 300


class ApiProxy:
    def __init__(self, admin_kubeconfig: Path) -> None:
        config = yaml.safe_load(admin_kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
        user = next(u for u in config["users"] if u["name"] == context["user"])["user"]
        self.upstream = cluster["server"].rstrip("/")
        self.ca = cluster.get("certificate-authority")
        if self.ca and not Path(self.ca).is_absolute():
            self.ca = str(admin_kubeconfig.parent / self.ca)
        self.token = user["token"]
        self.requests: list[Request] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()

    # --- control (from the test's thread) ------------------------------------------------------------
    def start(self) -> ApiProxy:
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True, name="apiproxy").start()
        assert ready.wait(30), "proxy did not start"
        return self

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "admin"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def cut(self) -> float:
        """Partition the process from the API server; returns the wall time of the cut."""
        at = time.time()
        self._loop.call_soon_threadsafe(self._open.clear)
        return at

    def heal(self) -> float:
        at = time.time()
        self._loop.call_soon_threadsafe(self._open.set)
        return at

    def stop(self) -> None:
        async def close() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    # --- the server (on the proxy's own event loop) -------------------------------------------------
    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def setup() -> None:
            self._open = asyncio.Event()
            self._open.set()
            context = ssl.create_default_context(cafile=self.ca)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(setup())
        ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = Request(started=time.time(), method=request.method, path=request.path_qs)
        with self._lock:
            self.requests.append(record)
        assert self._open is not None and self._session is not None
        if not self._open.is_set():
            record.held = True
            await self._open.wait()  # the client may give up meanwhile (the handler is then cancelled)
            record.ended, record.status = time.time(), 503
            return web.Response(status=503, text="dropped in a partition")
        body = await request.read()
        if record.write:
            record.body = body[:400]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        streaming = request.query.get("watch") in ("true", "1") or request.query.get("follow") == "true"
        record.forwarded = True
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=body or None,
            headers=headers,
            # The kubernetes client may send a body without a Content-Type (the API server then reads
            # JSON); aiohttp would otherwise label it application/octet-stream, which is refused.
            skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent"),
        ) as upstream:
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            if not streaming:
                payload = await upstream.read()
                record.ended, record.status = time.time(), upstream.status
                if record.write and "gzip" not in upstream.headers.get("Content-Encoding", ""):
                    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                        rv = json.loads(payload)["metadata"]["resourceVersion"]
                        record.resource_version = int(rv)
                return web.Response(status=upstream.status, body=payload, headers=out_headers)
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            await response.prepare(request)
            record.status = upstream.status
            async for chunk in upstream.content.iter_any():
                await self._open.wait()  # a partition: the stream goes silent
                await response.write(chunk)
            record.ended = time.time()
            return response
