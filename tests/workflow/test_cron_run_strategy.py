"""CronWorkflow run strategies: runs queue on the cron's own semaphore; StrictSequential stops after a
failed run."""

from __future__ import annotations

from meson.api.validation import validate_cronworkflow
from meson.workflow.cron import ChildWorkflow
from tests.workflow.test_cron import Driver, cron, ts


def test_sequential_and_parallel_runs_hold_the_cron_s_semaphore():
    sequential = Driver(cron(runStrategy={"type": "Sequential"}))
    ((_, manifest),) = sequential.at(ts("2024-06-01T00:05:00")).create
    assert manifest["spec"]["synchronization"] == {"semaphore": {"name": "cron-nightly", "limit": 1}}
    parallel = Driver(cron(runStrategy={"type": "Parallel", "limit": 3}))
    ((_, manifest),) = parallel.at(ts("2024-06-01T00:05:00")).create
    assert manifest["spec"]["synchronization"] == {"semaphore": {"name": "cron-nightly", "limit": 3}}
    # Runs still active do not stop new ones from being created: they queue (concurrencyPolicy Allow).
    assert len(sequential.at(ts("2024-06-01T00:10:00")).create) == 1


def test_strict_sequential_creates_no_run_after_a_failed_one_until_a_run_succeeds():
    d = Driver(cron(runStrategy={"type": "StrictSequential"}))
    d.at(ts("2024-06-01T00:05:00"))
    (first,) = d.children
    d.finish(first, "Failed", ts("2024-06-01T00:06:00"))
    skipped = d.at(ts("2024-06-01T00:10:00"))
    assert skipped.create == []
    assert [e.reason for e in skipped.events] == ["SkippedRun"]
    assert "failed (runStrategy StrictSequential)" in skipped.events[0].message
    d.children[first] = ChildWorkflow(
        first, d.children[first].scheduled, "Succeeded", ts("2024-06-01T00:12:00")
    )
    assert len(d.at(ts("2024-06-01T00:15:00")).create) == 1  # the failed run was restarted and succeeded


def test_run_strategy_needs_allow_and_no_semaphore_of_the_template():
    forbid = cron(runStrategy={"type": "Sequential"}, concurrencyPolicy="Forbid")
    assert validate_cronworkflow(forbid) == [
        "spec.runStrategy: needs concurrencyPolicy Allow (runs queue instead of overlapping), not Forbid"
    ]
    both = cron(runStrategy={"type": "Sequential"})
    both["spec"]["workflowTemplate"]["spec"]["synchronization"] = {"semaphore": {"name": "x"}}
    assert validate_cronworkflow(both) == [
        "spec.runStrategy: the runs hold the semaphore cron-NAME; the template cannot set synchronization too"
    ]
