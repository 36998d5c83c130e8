"""The web dashboard in a real browser (headless Chromium, Debian's `chromium` package, driven by
Playwright) against the real control plane and the real operator: the queue tree, pending work with
positions, a workflow's DAG whose steps change colour as it runs, a stream job's revision, all arriving
live (no reload), and no console error. A screenshot is saved as a test artifact."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import apply, queue, step, uid, wait_for, wait_workflow, workflow
from e2e.operator import OperatorProcess
from e2e.test_streamjobs import streamjob

ARTIFACTS = Path(os.environ.get("MESON_E2E_ARTIFACTS") or tempfile.mkdtemp(prefix="meson-e2e-artifacts-"))
GREEN, BLUE = "#2e7d32", "#0277bd"  # Succeeded, Running (meson/web/dag.py)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "no chromium on $PATH: install Debian's chromium package (.ci/run does: apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def test_dashboard_shows_queues_pending_work_and_a_dag_that_changes_colour_live(
    cluster: Cluster,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    namespace: str,
    queues: list[str],
    browser: object,
) -> None:
    url = f"http://127.0.0.1:{operator.dashboard_port}/"  # type: ignore[attr-defined]

    def serving() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    # The page is served once the operator's startup (listing the world) is done.
    wait_for(serving, 60, "the dashboard to answer")
    q, tight = f"dash-{uid()}", f"dash-tight-{uid()}"
    queues += [q, tight]
    apply(cluster, queue(q, cpu=8), queue(tight, cpu=1, limit=1))

    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url)
    page.wait_for_selector(".status.live", timeout=20_000)
    page.wait_for_selector(f'#queues tr[data-queue="{q}"]', timeout=20_000)
    assert page.locator(f'#queues tr[data-queue="{tight}"] td').nth(4).inner_text() == "0 / 1 / 1"

    # Everything below arrives while the page stays open: server-sent events, no reload.
    steps = [
        step("extract", duration="2s"),
        step("transform", deps=["extract"], duration="4s"),
        step("load", deps=["transform"], duration="1s"),
    ]
    apply(cluster, workflow("etl", q, steps), namespace=namespace)
    dag = f'[data-workflow="{namespace}/etl"] svg'
    page.wait_for_selector(dag, timeout=30_000)
    running = page.wait_for_selector(f'{dag} g[data-step="transform"][data-phase="Running"]', timeout=60_000)
    assert running.query_selector("rect").get_attribute("fill") == BLUE
    assert page.locator(f'{dag} g[data-step="extract"]').get_attribute("data-phase") == "Succeeded"
    assert page.locator(f'{dag} g[data-step="load"]').get_attribute("data-phase") in ("Waiting", "Pending")
    page.screenshot(path=str(ARTIFACTS / "dashboard-running.png"), full_page=True)
    wait_workflow(custom, namespace, "etl", ("Succeeded",))
    page.wait_for_selector(f'[data-workflow="{namespace}/etl"][data-phase="Succeeded"]', timeout=20_000)
    fills = [g.query_selector("rect").get_attribute("fill") for g in page.query_selector_all(f"{dag} g.step")]
    assert fills == [GREEN] * 3

    # Three 1-CPU steps in a 1-CPU queue: one runs, two wait with positions 1 and 2.
    wide = [step(f"s{i}", cpu="1", duration="30s", expectedDurationSeconds=30) for i in range(3)]
    apply(cluster, workflow("wide", tight, wide), namespace=namespace)
    rows = f'#pending tr[data-workload^="{namespace}/wide/"]'
    page.wait_for_function(f"document.querySelectorAll('{rows}').length === 2", timeout=30_000)
    positions = [r.query_selector_all("td")[1].inner_text() for r in page.query_selector_all(rows)]
    assert positions == ["1", "2"]
    assert all(r.query_selector_all("td")[0].inner_text() == tight for r in page.query_selector_all(rows))
    # The operator predicts start times every 30 s from the steps' expected 30 s: the first waiting step
    # starts when the running one ends, within its 30 s.
    first_eta = f"{rows} td:nth-child(5)"  # the first waiting row's ETA cell
    page.wait_for_function(
        f"(document.querySelector('{first_eta}') || {{}}).textContent?.startsWith('in ')", timeout=45_000
    )
    assert int(page.inner_text(first_eta).removeprefix("in ").rstrip("s")) <= 30

    apply(cluster, streamjob("clicks", q, replicas=1), namespace=namespace)
    job = page.wait_for_selector(
        f'#streamjobs tr[data-streamjob="{namespace}/clicks"] .rev.current', timeout=60_000
    )
    revision = custom.get_namespaced_custom_object("meson.dev", "v1alpha1", namespace, "streamjobs", "clicks")
    assert job.inner_text().rstrip("✓") == revision["status"]["currentRevision"]

    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    print(f"dashboard screenshots in {ARTIFACTS}")
    assert problems == []
    page.close()
