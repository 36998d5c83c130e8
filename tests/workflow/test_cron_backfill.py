"""Cron backfill: the runs of a past range, in order, at most `parallel` at once, each time once."""

from __future__ import annotations

import zoneinfo

import pytest

from meson.api.validation import backfill_problems, validate_cronworkflow
from meson.workflow import parse_time
from meson.workflow.cron import ChildWorkflow, child_name, plan_cron
from meson.workflow_commands import backfill_change, utc_time
from tests.workflow.test_cron import cron, ts

NOW = ts("2025-07-01T12:00:00")


class Backfiller:
    def __init__(self, obj: dict) -> None:
        self.obj = obj
        self.children: dict[str, ChildWorkflow] = {}
        self.created: list[str] = []
        self.manifests: dict[str, dict] = {}
        self.most_at_once = 0

    def cycle(self, now: float) -> None:
        result = plan_cron(self.obj, now, list(self.children.values()))
        for name in result.delete:
            self.children.pop(name, None)
        for name, manifest in result.create:
            labels = manifest["metadata"]["labels"]
            scheduled = parse_time(manifest["metadata"]["annotations"]["meson.dev/scheduled-time"])
            backfill = labels.get("meson.dev/backfill") == "true"
            self.children[name] = ChildWorkflow(name, scheduled, "Running", None, backfill)
            self.created.append(name)
            self.manifests[name] = manifest
        self.obj["status"] = result.status
        running = [c for c in self.children.values() if c.backfill and c.phase == "Running"]
        self.most_at_once = max(self.most_at_once, len(running))

    def finish_all(self, now: float) -> None:
        for name, c in list(self.children.items()):
            if c.phase == "Running":
                self.children[name] = ChildWorkflow(name, c.scheduled, "Succeeded", now, c.backfill)


def daily(**spec) -> dict:
    obj = cron("0 0 * * *", created="2025-06-20T00:00:00", **spec)
    obj["spec"]["workflowTemplate"]["spec"]["parameters"].append({"name": "scheduledTime", "default": ""})
    obj["spec"]["backfill"] = {"from": "2025-06-01T00:00:00Z", "to": "2025-06-10T00:00:00Z", "parallel": 3}
    return obj


def run_to_the_end(b: Backfiller, now: float = NOW) -> None:
    for step in range(20):
        b.cycle(now + step)
        b.finish_all(now + step)


def test_ten_daily_runs_three_at_a_time_with_their_time_as_a_parameter_and_a_second_backfill_creates_none():
    b = Backfiller(daily(successfulWorkflowsHistoryLimit=2))
    run_to_the_end(b)
    days = [ts(f"2025-06-{d:02d}T00:00:00") for d in range(1, 11)]
    backfilled = [n for n in b.created if b.manifests[n]["metadata"]["labels"].get("meson.dev/backfill")]
    assert backfilled == [child_name("nightly", t) for t in days]  # in order, deterministic names
    assert b.most_at_once == 3
    params = b.manifests[backfilled[4]]["spec"]["parameters"]
    assert {p["name"]: p.get("value") for p in params}["scheduledTime"] == "2025-06-05T00:00:00Z"
    (entry,) = b.obj["status"]["backfills"]
    assert entry["total"] == 10 and entry["created"] == 10 and "next" not in entry and entry["completedAt"]
    # The history limit deleted most of them; running the same backfill again creates nothing.
    assert len(b.children) < 10
    b.obj["spec"]["backfill"] = dict(b.obj["spec"]["backfill"])
    before = len(b.created)
    run_to_the_end(b, NOW + 100)
    assert [n for n in b.created[before:] if n in backfilled] == []


def test_times_that_already_have_a_run_are_skipped_and_backfill_runs_do_not_count_for_forbid():
    obj = daily(concurrencyPolicy="Forbid")
    b = Backfiller(obj)
    existing = child_name("nightly", ts("2025-06-03T00:00:00"))
    b.children[existing] = ChildWorkflow(existing, ts("2025-06-03T00:00:00"), "Succeeded", NOW - 10**6)
    run_to_the_end(b)
    assert existing not in b.created and b.obj["status"]["backfills"][0]["created"] == 9
    # The scheduled run of the day was still created while backfill runs were active (Forbid ignores them).
    assert child_name("nightly", ts("2025-07-01T00:00:00")) in b.created


def test_a_suspended_cron_makes_no_backfill_run():
    b = Backfiller(daily(suspend=True))
    b.cycle(NOW)
    assert b.created == []


def test_backfill_ranges_are_refused_when_backwards_future_empty_or_too_large():
    utc = zoneinfo.ZoneInfo("UTC")
    backwards = backfill_problems("0 0 * * *", utc, "2025-06-10T00:00:00Z", "2025-06-01T00:00:00Z", NOW)
    assert backwards == (
        0,
        ["spec.backfill: the range is backwards: from 2025-06-10T00:00:00Z is after to 2025-06-01T00:00:00Z"],
    )
    future = backfill_problems("0 0 * * *", utc, "2025-06-01T00:00:00Z", "2025-08-01T00:00:00Z", NOW)[1]
    assert future == [
        "spec.backfill.to: 2025-08-01T00:00:00Z is in the future (a backfill covers past times only)"
    ]
    empty = backfill_problems("0 0 1 1 *", utc, "2025-06-01T00:00:00Z", "2025-06-10T00:00:00Z", NOW)[1]
    assert empty == [
        "spec.backfill: the schedule '0 0 1 1 *' has no time from 2025-06-01T00:00:00Z to "
        "2025-06-10T00:00:00Z"
    ]
    many = backfill_problems("* * * * *", utc, "2025-06-01T00:00:00Z", "2025-06-10T00:00:00Z", NOW)[1]
    assert many and "more than 1000 scheduled times" in many[0]
    obj = daily()
    obj["spec"]["backfill"] = {"from": "2025-06-10T00:00:00Z", "to": "2025-06-01T00:00:00Z"}
    assert validate_cronworkflow(obj) == [
        "spec.backfill: the range is backwards: from 2025-06-10T00:00:00Z is after to 2025-06-01T00:00:00Z"
    ]


def test_cli_reads_dates_and_counts_the_runs():
    assert utc_time("2025-06-01") == "2025-06-01T00:00:00Z"
    assert utc_time("2025-06-01T02:00:00+02:00") == "2025-06-01T00:00:00Z"
    with pytest.raises(SystemExit, match="is not a time"):
        utc_time("yesterday")
    patch, count = backfill_change(daily(), "2025-06-01T00:00:00Z", "2025-06-10T00:00:00Z", 3)
    assert count == 10 and patch == {
        "backfill": {"from": "2025-06-01T00:00:00Z", "to": "2025-06-10T00:00:00Z", "parallel": 3}
    }
    with pytest.raises(SystemExit, match="backwards"):
        backfill_change(daily(), "2025-06-10T00:00:00Z", "2025-06-01T00:00:00Z", 1)
