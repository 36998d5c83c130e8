"""CronWorkflow planning: schedules in time zones, catch-up, deadlines, concurrency, history."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from meson.workflow import parse_time, rfc3339
from meson.workflow.cron import ChildWorkflow, child_name, plan_cron

_uids = itertools.count(1)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def cron(schedule: str = "*/5 * * * *", created: str = "2024-06-01T00:00:00", **spec) -> dict:
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": f"cron-{next(_uids)}",
            "generation": 1,
            "creationTimestamp": rfc3339(ts(created)),
        },
        "spec": {
            "schedule": schedule,
            "workflowTemplate": {
                "metadata": {"labels": {"team": "data"}, "annotations": {"owner": "ops"}},
                "spec": {
                    "queue": "batch",
                    "parameters": [{"name": "day", "default": "today"}],
                    "steps": [
                        {"name": "a", "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}
                    ],
                },
            },
            **spec,
        },
    }


class Driver:
    """Applies cron plans: creates children (Running), deletes them, persists the status."""

    def __init__(self, obj: dict) -> None:
        self.obj = obj
        self.children: dict[str, ChildWorkflow] = {}
        self.created: list[tuple[str, float]] = []
        self.deleted: list[str] = []

    def at(self, now: float):
        result = plan_cron(self.obj, now, list(self.children.values()))
        for name in result.delete:
            self.children.pop(name, None)
            self.deleted.append(name)
        for name, manifest in result.create:
            scheduled = parse_time(manifest["metadata"]["annotations"]["meson.dev/scheduled-time"])
            self.children.setdefault(name, ChildWorkflow(name, scheduled, "Running", None))
            self.created.append((name, scheduled))
        self.obj["status"] = result.status
        return result

    def finish(self, name: str, phase: str, when: float) -> None:
        child = self.children[name]
        self.children[name] = ChildWorkflow(name, child.scheduled, phase, when)


def test_creates_the_workflow_at_the_scheduled_time():
    d = Driver(cron())
    before = d.at(ts("2024-06-01T00:03:10"))
    assert before.create == [] and before.wake_at == ts("2024-06-01T00:05:00")
    assert d.obj["status"]["nextScheduleTime"] == "2024-06-01T00:05:00Z"
    result = d.at(ts("2024-06-01T00:05:00"))
    ((name, manifest),) = result.create
    assert (
        name
        == child_name("nightly", ts("2024-06-01T00:05:00"))
        == f"nightly-{int(ts('2024-06-01T00:05:00')) // 60}"
    )
    assert manifest["kind"] == "Workflow" and manifest["metadata"]["name"] == name
    assert manifest["metadata"]["labels"] == {"team": "data", "meson.dev/cronworkflow": "nightly"}
    assert manifest["metadata"]["annotations"] == {
        "owner": "ops",
        "meson.dev/scheduled-time": "2024-06-01T00:05:00Z",
    }
    assert "namespace" not in manifest["metadata"] and "ownerReferences" not in manifest["metadata"]
    assert manifest["spec"] == d.obj["spec"]["workflowTemplate"]["spec"]
    assert manifest["spec"] is not d.obj["spec"]["workflowTemplate"]["spec"]
    status = d.obj["status"]
    assert status["active"] == [name] and status["lastScheduleTime"] == "2024-06-01T00:05:00Z"
    assert status["nextScheduleTime"] == "2024-06-01T00:10:00Z" and result.wake_at == ts(
        "2024-06-01T00:10:00"
    )
    assert d.at(ts("2024-06-01T00:06:00")).create == []


def test_a_lost_status_write_does_not_create_the_run_twice():
    obj = cron()
    d = Driver(obj)
    d.at(ts("2024-06-01T00:05:01"))
    obj.pop("status")  # the status write was lost: the child exists
    again = d.at(ts("2024-06-01T00:05:20"))
    assert again.create == [] and len(d.created) == 1
    assert d.obj["status"]["lastScheduleTime"] == "2024-06-01T00:05:00Z"


def test_only_the_latest_missed_run_is_caught_up():
    d = Driver(cron())
    d.at(ts("2024-06-01T00:05:00"))
    d.finish(d.created[0][0], "Succeeded", ts("2024-06-01T00:06:00"))
    d.at(ts("2024-06-01T01:02:00"))  # the operator was down for an hour
    assert [s for _, s in d.created] == [ts("2024-06-01T00:05:00"), ts("2024-06-01T01:00:00")]


def test_a_run_past_the_starting_deadline_is_skipped():
    d = Driver(cron(startingDeadlineSeconds=60))
    result = d.at(ts("2024-06-01T00:07:00"))  # 120 s late
    assert result.create == [] and result.events[0].reason == "MissedSchedule"
    assert d.obj["status"]["lastScheduleTime"] == "2024-06-01T00:05:00Z"
    assert d.at(ts("2024-06-01T00:08:00")).create == []  # skipped for good
    result = d.at(ts("2024-06-01T00:10:30"))  # 30 s late: within the deadline
    assert [s for _, s in d.created] == [ts("2024-06-01T00:10:00")]


def test_allow_runs_concurrently():
    d = Driver(cron())
    d.at(ts("2024-06-01T00:05:00"))
    d.at(ts("2024-06-01T00:10:00"))
    assert len(d.created) == 2 and len(d.obj["status"]["active"]) == 2


def test_forbid_skips_while_a_run_is_active():
    d = Driver(cron(concurrencyPolicy="Forbid"))
    d.at(ts("2024-06-01T00:05:00"))
    result = d.at(ts("2024-06-01T00:10:00"))
    assert result.create == [] and result.events[0].reason == "SkippedRun"
    first = d.created[0][0]
    d.finish(first, "Succeeded", ts("2024-06-01T00:11:00"))
    assert d.at(ts("2024-06-01T00:11:30")).create == []  # the skipped run is not started late
    assert "active" not in d.obj["status"]
    d.at(ts("2024-06-01T00:15:00"))
    assert [s for _, s in d.created] == [ts("2024-06-01T00:05:00"), ts("2024-06-01T00:15:00")]


def test_replace_deletes_the_active_run_and_starts_the_new_one():
    d = Driver(cron(concurrencyPolicy="Replace"))
    d.at(ts("2024-06-01T00:05:00"))
    first = d.created[0][0]
    result = d.at(ts("2024-06-01T00:10:00"))
    assert result.delete == [first] and len(result.create) == 1
    assert d.obj["status"]["active"] == [result.create[0][0]]


def test_history_limits_keep_the_newest_finished_runs():
    d = Driver(cron(successfulWorkflowsHistoryLimit=2, failedWorkflowsHistoryLimit=1))
    for i, phase in enumerate(["Succeeded", "Failed", "Succeeded", "Failed", "Succeeded", "Succeeded"]):
        scheduled = ts("2024-06-01T00:05:00") + 300 * i
        d.at(scheduled)
        d.finish(child_name("nightly", scheduled), phase, scheduled + 60)
    d.at(ts("2024-06-01T00:34:00"))
    kept = sorted(d.children)
    expected = sorted(child_name("nightly", ts("2024-06-01T00:05:00") + 300 * i) for i in (3, 4, 5))
    assert kept == expected
    assert d.obj["status"]["lastSuccessfulTime"] == rfc3339(ts("2024-06-01T00:30:00") + 60)


def test_schedules_are_read_in_the_time_zone():
    summer = Driver(cron("0 2 * * *", created="2024-06-30T12:00:00", timeZone="Europe/Paris"))
    result = summer.at(ts("2024-06-30T12:00:00"))
    assert summer.obj["status"]["nextScheduleTime"] == "2024-07-01T00:00:00Z"  # 02:00 CEST
    result = summer.at(ts("2024-07-01T00:00:00"))
    assert (
        result.create[0][1]["metadata"]["annotations"]["meson.dev/scheduled-time"] == "2024-07-01T00:00:00Z"
    )
    winter = Driver(cron("0 2 * * *", created="2024-01-14T12:00:00", timeZone="Europe/Paris"))
    winter.at(ts("2024-01-15T00:30:00"))
    assert winter.created == [] and winter.obj["status"]["nextScheduleTime"] == "2024-01-15T01:00:00Z"
    utc = Driver(cron("0 2 * * *", created="2024-01-14T12:00:00"))
    utc.at(ts("2024-01-14T12:00:00"))
    assert utc.obj["status"]["nextScheduleTime"] == "2024-01-15T02:00:00Z"


def test_suspended_cron_starts_nothing_and_resumes_with_the_latest_missed_run():
    obj = cron(suspend=True)
    d = Driver(obj)
    result = d.at(ts("2024-06-01T00:12:00"))
    assert result.create == [] and result.wake_at is None and "nextScheduleTime" not in d.obj["status"]
    obj["spec"]["suspend"] = False
    obj["metadata"]["generation"] += 1
    d.at(ts("2024-06-01T00:13:00"))
    assert [s for _, s in d.created] == [ts("2024-06-01T00:10:00")]


def test_cron_plan_is_deterministic():
    obj = cron(concurrencyPolicy="Replace")
    children = [ChildWorkflow("nightly-1", ts("2024-06-01T00:00:00"), "Running", None)]
    assert plan_cron(obj, ts("2024-06-01T00:05:00"), children) == plan_cron(
        obj, ts("2024-06-01T00:05:00"), children
    )
