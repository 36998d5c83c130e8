"""Predicted start times in the status: a waiting step says when it is expected to start (``eta``, to the
minute), the workflow shows its earliest (``kubectl get mwf`` column ETA), and both go once it runs."""

from __future__ import annotations

import calendar
import time

from meson.workflow import with_queue_positions
from tests.controllers.builders import queue, step, workflow
from tests.controllers.fake_cluster import FakeCluster, Operator, run, sync


def _epoch(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


@sync
async def test_a_waiting_step_shows_when_it_is_predicted_to_start() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=1))
    # Two one-CPU steps of 10 minutes each in a one-CPU queue: the second starts when the first ends.
    for name in ("first", "second"):
        cluster.clock.advance(0.01)
        cluster.apply(workflow(name, "q", [step("a", cpu="1", duration="600s", expectedDurationSeconds=600)]))
    op = Operator(cluster)
    started = cluster.clock()
    await run(cluster, op, lambda: "eta" in (cluster.status("workflows", "second") or {}), max_cycles=40)

    waiting = cluster.status("workflows", "second")
    step_status = waiting["steps"][0]
    assert step_status["phase"] == "Pending" and step_status["position"] == 1
    eta = _epoch(step_status["eta"])
    # The first step runs from about `started`; the prediction is its end, rounded up to the minute.
    assert started + 600 - 60 <= eta <= started + 600 + 120, (started, step_status["eta"])
    assert eta % 60 == 0
    assert waiting["eta"] == step_status["eta"]
    assert "eta" not in cluster.status("workflows", "first")  # running: nothing to predict

    await run(cluster, op, lambda: cluster.status("workflows", "second")["steps"][0]["phase"] == "Running",
              max_cycles=30, tick=30)  # fmt: skip
    running = cluster.status("workflows", "second")
    assert "eta" not in running and "eta" not in running["steps"][0]


def test_the_workflow_eta_is_the_earliest_of_its_steps_and_goes_with_the_position() -> None:
    status = {
        "steps": [
            {"name": "a", "phase": "Pending"},
            {"name": "b", "phase": "Pending"},
            {"name": "c", "phase": "Running"},
        ]
    }
    positions = {"a": (2, "waiting", "2026-11-28T14:05:00Z"), "b": (1, "waiting", "2026-11-28T14:01:00Z")}
    written = with_queue_positions(status, positions)
    assert [s.get("eta") for s in written["steps"]] == ["2026-11-28T14:05:00Z", "2026-11-28T14:01:00Z", None]
    assert written["eta"] == "2026-11-28T14:01:00Z"
    # Without a prediction (or once admitted) the step and the workflow lose it.
    again = with_queue_positions(written, {"a": (1, "waiting"), "b": (2, "waiting")})
    assert "eta" not in again and all("eta" not in s for s in again["steps"])
