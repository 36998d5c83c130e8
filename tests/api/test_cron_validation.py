"""CronWorkflow checks: whatever validate() accepts, plan_cron can plan (the controller relies on it with the
webhook off), and whatever plan_cron would fail on is refused with a clear message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meson.api.validation import validate
from meson.workflow.cron import plan_cron

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC).timestamp()  # a DST change in Europe


def _cron(schedule: str = "0 2 * * *", name: str = "nightly", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": "u-1",
            "generation": 1,
            "creationTimestamp": "2026-03-01T00:00:00Z",
        },
        "spec": {
            "schedule": schedule,
            "workflowTemplate": {
                "spec": {
                    "steps": [
                        {"name": "a", "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}
                    ]
                }
            },
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("61 2 * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 32 * *", "day of month 32 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("50-60 * * * *", "minute 60 is out of range 0-59"),
        ("0,15,75 * * * *", "minute 75 is out of range 0-59"),
        ("*/0 * * * *", "minute step must be at least 1, got '*/0'"),
        ("0 0 * JAN-DEC/0 *", "month step must be at least 1, got 'JAN-DEC/0'"),
        ("0 0 31 2 *", "it never matches a real date (e.g. 30 February)"),
        ("0 0 30 2 *", "it never matches a real date (e.g. 30 February)"),
        ("0 0 * FOO *", "[0 0 * foo *] is not acceptable"),
        ("0 0 * * 5L", "[0 0 * * 5l] is not acceptable"),
        ("H * * * *", "Hashed definitions must include hash_id"),
        (
            "0 0 * * * *",
            "expected five fields (minute hour day-of-month month day-of-week) or one of @yearly, @annually, "
            "@monthly, @weekly, @daily, @midnight, @hourly",
        ),
        (
            "@reboot",
            "expected five fields (minute hour day-of-month month day-of-week) or one of @yearly, @annually, "
            "@monthly, @weekly, @daily, @midnight, @hourly",
        ),
    ],
)
def test_bad_schedules_are_refused_clearly(schedule, message):
    assert validate("CronWorkflow", _cron(schedule)) == [
        f"spec.schedule: invalid cron schedule {schedule!r}: {message}"
    ]


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("Mars/Olympus", "unknown time zone 'Mars/Olympus' (use an IANA name such as UTC)"),
        ("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons' (use an IANA name such as UTC)"),
        ("Europe", "unknown time zone 'Europe' (use an IANA name such as UTC)"),  # a directory: OSError
        ("Europe/", "unknown time zone 'Europe/' (use an IANA name such as UTC)"),
        ("../../etc/passwd", "unknown time zone '../../etc/passwd' (use an IANA name such as UTC)"),
        ("utc", "unknown time zone 'utc' (use an IANA name such as UTC)"),
        ("Europe/Paris ", "unknown time zone 'Europe/Paris ' (use an IANA name such as UTC)"),
        ("", "must not be empty (leave it out for UTC)"),
        ("Local", "'Local' is not allowed (use an IANA name such as Europe/Paris)"),
        ("localtime", "'localtime' is not allowed (use an IANA name such as Europe/Paris)"),
    ],
)
def test_bad_time_zones_are_refused_clearly(zone, message):
    assert validate("CronWorkflow", _cron(timeZone=zone)) == [f"spec.timeZone: {message}"]


def test_schedule_and_zone_are_both_reported():
    assert validate("CronWorkflow", _cron("61 * * * *", timeZone="Mars/Olympus")) == [
        "spec.schedule: invalid cron schedule '61 * * * *': minute 61 is out of range 0-59",
        "spec.timeZone: unknown time zone 'Mars/Olympus' (use an IANA name such as UTC)",
    ]


GOOD_SCHEDULES = [
    "* * * * *",
    "*/5 * * * *",
    "0 2 * * *",
    "30 1 * * *",  # 01:30 does not exist in Europe/Paris on NOW's day
    "0 0 29 2 *",
    "0 0 L * *",
    "0 0 ? * ?",
    "0 22-2 * * *",  # wraps around midnight
    "0 9 * JAN-MAR MON-FRI",
    "0 0 * * 7",
    "*/61 * * * *",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
]


@pytest.mark.parametrize("zone", [None, "UTC", "Europe/Paris", "America/St_Johns", "Pacific/Chatham"])
@pytest.mark.parametrize("schedule", GOOD_SCHEDULES)
def test_accepted_schedules_plan(schedule, zone):
    cron = _cron(schedule, **({"timeZone": zone} if zone else {}))
    assert validate("CronWorkflow", cron) == []
    plan = plan_cron(cron, NOW, [])
    assert plan.wake_at is not None and plan.wake_at > NOW


_FIELD = st.one_of(
    st.just("*"),
    st.just("?"),
    st.integers(0, 70).map(str),
    st.tuples(st.integers(0, 70), st.integers(0, 70)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.tuples(st.sampled_from(["*", "0", "1-40"]), st.integers(0, 70)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.sampled_from(["L", "jan", "MON-FRI", "5L", "L5", "1,2,99", "W"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FIELD, min_size=5, max_size=5), st.sampled_from([None, "Europe/Paris", "Asia/Kolkata"]))
def test_validate_accepts_exactly_what_plan_cron_can_plan(fields, zone):
    cron = _cron(" ".join(fields), **({"timeZone": zone} if zone else {}))
    problems = validate("CronWorkflow", cron)
    try:
        plan_cron(cron, NOW, [])
    except Exception as exc:
        assert problems, f"accepted but plan_cron raised {exc!r}"


def test_name_must_fit_the_run_label():
    assert validate("CronWorkflow", _cron(name="n" * 63)) == []
    assert validate("CronWorkflow", _cron(name="n" * 64)) == [
        "metadata.name: 64 characters, more than the 63 allowed for a CronWorkflow (it is the value of the "
        "label meson.dev/cronworkflow on each run's Workflow)"
    ]


def test_run_labels_and_annotations_must_be_valid():
    cron = _cron()
    cron["spec"]["workflowTemplate"]["metadata"] = {
        "labels": {"team": "data", "acme.io/tier": "gold", "a/b/c": "x", "ok": "not ok", "-x": "y"},
        "annotations": {"owner": "ops", "Bad_Prefix/x": "y", "big": "x" * (256 * 1024)},
    }
    assert validate("CronWorkflow", cron) == [
        "spec.workflowTemplate.metadata.labels: invalid label key 'a/b/c': the prefix before '/' must be a "
        "DNS subdomain such as example.com",
        "spec.workflowTemplate.metadata.labels.ok: invalid label value 'not ok': at most 63 characters: "
        "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        "spec.workflowTemplate.metadata.labels: invalid label key '-x': the name must be 1-63 characters: "
        "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        "spec.workflowTemplate.metadata.annotations: invalid annotation key 'Bad_Prefix/x': the prefix "
        "before '/' must be a DNS subdomain such as example.com",
        "spec.workflowTemplate.metadata.annotations: 262168 bytes, more than the 262144 allowed",
    ]


def test_embedded_workflow_spec_is_checked():
    cron = _cron()
    step = cron["spec"]["workflowTemplate"]["spec"]["steps"][0]
    step["dependencies"] = ["missing"]
    step["template"]["spec"]["containers"][0]["args"] = ["{{ params.day }}"]
    assert validate("CronWorkflow", cron) == [
        "spec.workflowTemplate.spec.steps[0].dependencies: unknown step 'missing'",
        "spec.workflowTemplate.spec.steps[0].template.spec.containers[0].args[0]: {{ params.day }} refers to "
        "undefined parameter 'day'",
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "startingDeadlineSeconds",
            -1,
            "spec.startingDeadlineSeconds: Input should be greater than or equal to 0",
        ),
        (
            "startingDeadlineSeconds",
            "soon",
            "spec.startingDeadlineSeconds: Input should be a valid integer, unable to parse string as an "
            "integer",
        ),
        (
            "successfulWorkflowsHistoryLimit",
            1001,
            "spec.successfulWorkflowsHistoryLimit: Input should be less than or equal to 1000",
        ),
        (
            "concurrencyPolicy",
            "Sometimes",
            "spec.concurrencyPolicy: Input should be 'Allow', 'Forbid' or 'Replace'",
        ),
        ("suspend", "maybe", "spec.suspend: Input should be a valid boolean, unable to interpret input"),
    ],
)
def test_other_fields_plan_cron_reads(field, value, message):
    assert validate("CronWorkflow", _cron(**{field: value})) == [message]


def test_starting_deadline_zero_and_huge_plan():
    for deadline in (0, 10**12):
        cron = _cron(startingDeadlineSeconds=deadline)
        assert validate("CronWorkflow", cron) == []
        plan_cron(cron, NOW, [])
