"""The dashboard's HTTP side (aiohttp): the page and its static files, ``/api/state`` (everything the page
shows, as JSON), ``/api/events`` (the same, pushed as server-sent events whenever it changes) and
``/api/workflows/{namespace}/{name}/dag.svg``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from meson import views
from meson.web.dag import dag_svg

SnapshotSource = Callable[[], views.Snapshot]
EtaSource = Callable[[str], float | None]  # workload key -> predicted admission (epoch seconds)
STATIC = resources.files("meson.web") / "static"
MAX_DAGS = 30  # workflows drawn on the page: the unfinished ones first, then the latest finished
_FINISHED = ("Succeeded", "Failed")
SOURCE: web.AppKey[SnapshotSource] = web.AppKey("source", SnapshotSource)  # type: ignore[arg-type]
INTERVAL: web.AppKey[float] = web.AppKey("interval", float)
CACHE: web.AppKey[dict] = web.AppKey("cache", dict)
ETA: web.AppKey[EtaSource] = web.AppKey("eta", EtaSource)  # type: ignore[arg-type]


def snapshot_of(store: Any) -> views.Snapshot:
    """The operator's in-memory view (``controllers.store.Store``: the objects as last watched) as the
    views' snapshot; empty until the view is primed."""
    if store is None:
        return views.Snapshot()
    return views.Snapshot(
        queues=list(store.queues.values()),
        workflows=list(store.workflows.values()),
        streamjobs=list(store.streamjobs.values()),
    )


def _drawn(workflows: list[dict]) -> list[dict]:
    def started(wf: dict) -> str:
        status = wf.get("status") or {}
        return status.get("startedAt") or (wf.get("metadata") or {}).get("creationTimestamp") or ""

    live = [w for w in workflows if (w.get("status") or {}).get("phase") not in _FINISHED]
    done = [w for w in workflows if (w.get("status") or {}).get("phase") in _FINISHED]
    live.sort(key=started, reverse=True)
    done.sort(key=started, reverse=True)
    return (live + done)[:MAX_DAGS]


def state(snap: views.Snapshot, now: float | None = None, eta: EtaSource | None = None) -> dict:
    """Everything the page shows, as plain data: the CLI's rows (``meson queues``, ``meson pending``,
    ``meson streamjob get`` without pods) plus each drawn workflow's DAG as SVG text; pending rows carry
    the operator's predicted admission time (``eta``) where it has one."""
    now = time.time() if now is None else now
    queues = views.queue_rows(snap.queues)
    workflows = []
    for wf in _drawn(snap.workflows):
        detail = views.workflow_detail(wf, now=now)
        row = views.as_data([detail])[0]
        row["svg"] = dag_svg(detail)
        workflows.append(row)
    return {
        "queues": views.as_data(queues),
        "pending": views.as_data(views.with_etas(views.pending_rows(snap.workflows, snap.streamjobs), eta))
        if eta is not None
        else views.as_data(views.pending_rows(snap.workflows, snap.streamjobs)),
        "workflows": workflows,
        "workflowCount": len(snap.workflows),
        "streamjobs": views.as_data(views.stream_detail(j) for j in snap.streamjobs),
    }


def _current(app: web.Application) -> str:
    """The state as JSON, computed at most once per interval however many pages watch (on a big cluster
    building it is the expensive part)."""
    cache = app[CACHE]
    now = time.monotonic()
    if cache.get("at") is None or now - cache["at"] >= app[INTERVAL]:
        cache["json"] = json.dumps(state(app[SOURCE](), eta=app.get(ETA)), separators=(",", ":"))
        cache["at"] = now
    return cache["json"]


async def index(request: web.Request) -> web.Response:
    return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html")


async def api_state(request: web.Request) -> web.Response:
    return web.Response(text=_current(request.app), content_type="application/json")


async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the state at once, then again each time it changes (checked every interval),
    and a comment line every 15 s so proxies keep the connection."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    last, quiet = None, 0.0
    interval = request.app[INTERVAL]
    try:
        while True:
            body = _current(request.app)
            if body != last:
                await response.write(f"event: state\ndata: {body}\n\n".encode())
                last, quiet = body, 0.0
            elif quiet >= 15:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
            await asyncio.sleep(interval)
            quiet += interval
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def api_dag(request: web.Request) -> web.Response:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    for wf in request.app[SOURCE]().workflows:
        meta = wf.get("metadata") or {}
        if meta.get("namespace") == ns and meta.get("name") == name:
            svg = dag_svg(views.workflow_detail(wf, now=time.time()))
            return web.Response(text=svg, content_type="image/svg+xml")
    raise web.HTTPNotFound(text=f"workflow {ns}/{name} not found")


def make_app(source: SnapshotSource, interval: float = 1.0, eta: EtaSource | None = None) -> web.Application:
    """The dashboard application over ``source`` (called for each state; cheap, no I/O) and the
    operator's predictions (``eta``)."""
    app = web.Application()
    app[SOURCE] = source
    if eta is not None:
        app[ETA] = eta
    app[INTERVAL] = interval
    app[CACHE] = {}
    app.router.add_get("/", index)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/api/events", api_events)
    app.router.add_get("/api/workflows/{namespace}/{name}/dag.svg", api_dag)
    app.router.add_static("/static/", path=str(STATIC), name="static")
    return app


async def start(
    source: SnapshotSource, port: int, host: str = "127.0.0.1", eta: EtaSource | None = None
) -> web.AppRunner:
    """Serve the dashboard on ``host:port`` in the running event loop (the operator's); returns the runner
    (``await runner.cleanup()`` stops it)."""
    runner = web.AppRunner(make_app(source, eta=eta), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
