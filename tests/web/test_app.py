"""The dashboard's HTTP handlers with aiohttp's test client over fixture objects: the state the page
renders (the CLI's rows, a DAG per workflow), live updates by server-sent events, the static page, and
nothing but reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from meson import views, web
from tests.views.test_detail import etl
from tests.views.test_views import QUEUES, STREAM, WORKFLOWS


def run(test: Callable[[TestClient, views.Snapshot], Awaitable[Any]], interval: float = 0.05) -> None:
    snap = views.Snapshot(queues=list(QUEUES), workflows=[*WORKFLOWS, etl()], streamjobs=[STREAM])

    async def main() -> None:
        client = TestClient(TestServer(web.make_app(lambda: snap, interval=interval)))
        await client.start_server()
        try:
            await test(client, snap)
        finally:
            await client.close()

    asyncio.run(main())


def test_state_has_the_queue_tree_pending_work_workflow_dags_and_stream_revisions():
    async def check(client: TestClient, snap: views.Snapshot) -> None:
        resp = await client.get("/api/state")
        assert resp.status == 200
        state = await resp.json()
        assert [q["name"] for q in state["queues"]] == ["demo", "ingest", "team-a", "nightly", "team-b"]
        team_a = state["queues"][2]
        assert team_a["resources"][0]["usage"] == 12500 and team_a["depth"] == 1
        assert [(p["queue"], p["position"]) for p in state["pending"]][:4] == [
            ("analytics", 3),  # etl's transform[2-4]
            ("analytics", 7),
            ("nightly", 1),
            ("nightly", 2),
        ]
        drawn = {w["name"]: w for w in state["workflows"]}
        assert set(drawn) == {"reports", "hotfix", "backfill", "done", "etl"}
        assert list(drawn)[-1] == "done", "finished workflows are drawn after unfinished ones"
        svg = drawn["etl"]["svg"]
        assert '<g class="step" data-step="transform" data-phase="Running">' in svg
        assert 'data-step="extract" data-phase="Succeeded"><title>' in svg and "#2e7d32" in svg
        assert svg.count('class="edge"') == 4  # transform, report <- extract; load <- transform, extract
        (job,) = state["streamjobs"]
        assert job["name"] == "clicks" and [r["revision"] for r in job["revisions"]] == ["abc"]

    run(check)


def test_events_push_the_state_then_each_change():
    async def check(client: TestClient, snap: views.Snapshot) -> None:
        resp = await client.get("/api/events")
        assert resp.headers["Content-Type"] == "text/event-stream"

        async def next_state() -> dict:
            event = b""
            while not event.endswith(b"\n\n"):
                event += await asyncio.wait_for(resp.content.readline(), 5)
            lines = event.decode().splitlines()
            assert lines[0] == "event: state"
            return json.loads(lines[1].removeprefix("data: "))

        first = await next_state()
        assert "urgent" not in json.dumps(first["queues"])
        snap.queues.append(
            {"metadata": {"name": "urgent"}, "spec": {"parent": "demo"}, "status": {"pending": 4}}
        )
        second = await next_state()
        assert "urgent" in [q["name"] for q in second["queues"]]
        resp.close()

    run(check)


def test_the_page_and_its_script_are_served_and_nothing_can_be_written():
    async def check(client: TestClient, snap: views.Snapshot) -> None:
        page = await client.get("/")
        assert page.status == 200 and "/static/app.js" in await page.text()
        script = await client.get("/static/app.js")
        assert script.status == 200 and "EventSource" in await script.text()
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for path in ("/", "/api/state", "/api/events"):
                assert (await client.request(method, path)).status == 405, (method, path)
        dag = await client.get("/api/workflows/ns/etl/dag.svg")
        assert dag.status == 200 and dag.content_type == "image/svg+xml"
        assert (await client.get("/api/workflows/ns/nope/dag.svg")).status == 404

    run(check)


def test_names_are_escaped_in_the_svg():
    wf = etl()
    wf["spec"]["steps"][0]["name"] = 'x"><script>alert(1)</script>'
    svg = web.dag_svg(views.workflow_detail(wf))
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_snapshot_of_the_operators_store():
    assert web.snapshot_of(None) == views.Snapshot()

    class Store:
        queues = {"a": {"metadata": {"name": "a"}}}
        workflows = {("ns", "w"): {"metadata": {"name": "w"}}}
        streamjobs: dict = {}

    snap = web.snapshot_of(Store())
    assert (len(snap.queues), len(snap.workflows), snap.streamjobs) == (1, 1, [])
