"""The operator's own list-and-watch against a scripted HTTP server on localhost: events split across
chunks, bookmarks, resuming where a watch ended, "410 Gone" re-lists (and hands the listed names over, so
the view forgets what vanished meanwhile), failures retried. e2e/test_watch.py runs it against the real
API server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from kubernetes import client

from meson.adapters import watch


def ignore(listed: set[tuple[str, str]]) -> None:
    pass


def pod(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv)}}


class Server:
    """Answers each watch request with the next script entry: a status, or lines sent in small chunks."""

    def __init__(self, script: list[Any], listing: list[dict[str, Any]], list_rv: str) -> None:
        self.script = script
        self.listing, self.list_rv = listing, list_rv
        self.watches: list[str] = []  # resourceVersion asked by each watch
        self.lists = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "1":
            self.lists += 1
            body = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": self.list_rv}}
            return web.json_response({**body, "items": self.listing})
        self.watches.append(request.query["resourceVersion"])
        step = self.script.pop(0) if self.script else None
        if step is None:  # nothing more: a watch that ends empty after a moment (the client comes back)
            await asyncio.sleep(0.05)
            step = []
        if isinstance(step, int):
            return web.Response(status=step, text="scripted")
        response = web.StreamResponse()
        await response.prepare(request)
        data = b"".join(json.dumps(e).encode() + b"\n" for e in step)
        for i in range(0, len(data), 7):  # lines split across chunks
            await response.write(data[i : i + 7])
        return response


async def serve(server: Server) -> tuple[web.AppRunner, client.Configuration]:
    app = web.Application()
    app.router.add_get("/api/v1/pods", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    return runner, cfg


async def run_until(server: Server, watcher: watch.Watcher, done: Any) -> None:
    task = asyncio.create_task(watcher.run())
    try:
        for _ in range(400):
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not done; watches asked {server.watches}")
    finally:
        await watch.stop([task])


def test_events_bookmarks_and_resuming_where_the_last_watch_ended(monkeypatch) -> None:
    monkeypatch.setattr(watch, "BACKOFF_START", 0.01)

    async def main() -> None:
        bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}
        server = Server(
            [
                [{"type": "ADDED", "object": pod("a", 11)}, bookmark],
                500,  # a failing server: retried from the same place
                [{"type": "MODIFIED", "object": pod("a", 13)}, {"type": "DELETED", "object": pod("a", 14)}],
            ],
            [],
            "1",
        )
        runner, cfg = await serve(server)
        seen: list[tuple[str, str, str]] = []

        def record(kind: str, obj: dict[str, Any]) -> None:
            seen.append((kind, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))

        watcher = watch.Watcher(cfg, "/api/v1/pods", record, ignore, name="pods", resource_version="10")
        await run_until(server, watcher, lambda: len(seen) == 3)
        await runner.cleanup()
        assert seen == [("ADDED", "a", "11"), ("MODIFIED", "a", "13"), ("DELETED", "a", "14")]
        # From the listing, then from the bookmark (twice: the 500 in between), then after the deletion.
        assert server.watches[:4] == ["10", "12", "12", "14"]
        assert server.lists == 0  # the initial listing is not made again

    asyncio.run(main())


def test_gone_relists_and_reports_what_vanished_as_deleted() -> None:
    async def main() -> None:
        server = Server(
            [410, [{"type": "ADDED", "object": pod("c", 31)}]],
            [pod("b", 21), pod("c-old", 5)],
            "30",
        )
        runner, cfg = await serve(server)
        seen: list[tuple[str, str]] = []
        relisted: list[set[tuple[str, str]]] = []
        watcher = watch.Watcher(
            cfg, "/api/v1/pods", lambda t, o: seen.append((t, o["metadata"]["name"])), relisted.append,
            name="p", resource_version="3",
        )  # fmt: skip
        await run_until(server, watcher, lambda: ("ADDED", "c") in seen)
        await runner.cleanup()
        assert seen == [("ADDED", "b"), ("ADDED", "c-old"), ("ADDED", "c")]
        assert relisted == [{("ns", "b"), ("ns", "c-old")}]  # the view forgets the rest
        assert server.watches[:2] == ["3", "30"] and server.lists == 1 and watcher.relists == 1

    asyncio.run(main())


def test_an_error_event_with_410_in_the_stream_relists_too() -> None:
    async def main() -> None:
        gone = {
            "type": "ERROR",
            "object": {"kind": "Status", "code": 410, "message": "too old resource version"},
        }
        server = Server([[gone]], [pod("a", 40)], "41")
        runner, cfg = await serve(server)
        seen: list[str] = []
        watcher = watch.Watcher(
            cfg, "/api/v1/pods", lambda t, o: seen.append(t), ignore, name="p", resource_version="2"
        )
        await run_until(server, watcher, lambda: server.watches[-1:] == ["41"])
        await runner.cleanup()
        assert seen == ["ADDED"] and server.lists == 1

    asyncio.run(main())
