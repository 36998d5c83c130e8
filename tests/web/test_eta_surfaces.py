"""Where the operator's predicted start times show: the dashboard's pending rows (looked up by the core's
workload key) and the per-queue metric."""

from __future__ import annotations

from prometheus_client import REGISTRY

from meson import views, web
from meson.adapters import metrics
from meson.core import AdmittedWorkload, QueueConfig, Resources, Snapshot, Workload
from meson.core.eta import predict
from tests.views.test_views import STREAM, WORKFLOWS


def test_pending_rows_map_to_the_cores_workload_keys():
    rows = views.pending_rows(WORKFLOWS, [STREAM])
    keys = [views.workload_key(r) for r in rows]
    assert keys == [
        "ns/clicks/3",
        "ns/clicks/4",
        "ns/hotfix/rebuild",
        "ns/reports/report-1",
        None,
        "ns/backfill/b-3",
    ]


def test_the_dashboard_state_carries_each_rows_eta():
    snap = views.Snapshot(workflows=list(WORKFLOWS), streamjobs=[STREAM])
    etas = {"ns/hotfix/rebuild": 1_000.0, "ns/clicks/3": 2_000.0}
    pending = web.state(snap, now=0.0, eta=etas.get)["pending"]
    by_workload = {(p["name"], p["workload"]): p["eta"] for p in pending}
    assert by_workload[("hotfix", "rebuild")] == 1_000.0 and by_workload[("clicks", "replica 3")] == 2_000.0
    assert by_workload[("reports", "report[1]")] is None
    assert all(p["eta"] is None for p in web.state(snap, now=0.0)["pending"])


def test_the_metric_is_each_queues_last_predicted_start():
    cpu = Resources(cpu=1000)
    queues = [QueueConfig("m", guaranteed=cpu, limit=cpu)]
    snap = Snapshot(
        now=100.0,
        queues=queues,
        pending=[Workload("a", "m", 0, 90, cpu, estimate=10), Workload("b", "m", 0, 95, cpu, estimate=10)],
        admitted=[AdmittedWorkload(Workload("r", "m", 0, 0, cpu, estimate=120), 0.0)],
    )
    metrics.observe_etas(snap, predict(snap))
    # r ends at 120, a runs 120-130, b starts at 130: 30 s from now.
    assert REGISTRY.get_sample_value("meson_queue_predicted_wait_seconds", {"queue": "m"}) == 30.0
    metrics.observe_etas(Snapshot(now=200.0, queues=queues, pending=[]), predict(Snapshot(200.0, queues, [])))
    assert REGISTRY.get_sample_value("meson_queue_predicted_wait_seconds", {"queue": "m"}) is None
