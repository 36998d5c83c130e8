"""The views (meson queues, meson pending, the demo's live screen) from fixture objects shaped like the API
server's answers: rows, ordering, and the text they render to (no terminal, no colour)."""

from __future__ import annotations

import json

import yaml
from rich.console import Console

from meson import views
from meson.cli import build_parser


def queue(name: str, parent: str | None = None, guaranteed="16", limit="48", usage="0", **extra) -> dict:
    spec = {"quota": {"cpu": {"guaranteed": guaranteed, "limit": limit}}, **extra}
    if parent:
        spec["parent"] = parent
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {"usage": {"cpu": usage}, "admitted": 2, "pending": 3},
    }


QUEUES = [
    queue("team-b", "demo", usage="20"),
    queue("demo", None, "48", "48", usage="44"),
    queue("team-a", "demo", usage="12500m", weight=2),
    queue("ingest", "demo", "8", "16", usage="4", admissionRate={"podsPerSecond": 2, "burst": 2}),
    queue("nightly", "team-a", "4", "8", usage="1"),
]


def workflow(name: str, queue_name: str, steps: list[dict], phase="Running", priority="demo-batch") -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"queue": queue_name, "priorityClassName": priority},
        "status": {
            "phase": phase,
            "progress": "1/4",
            "counts": {"total": 4, "succeeded": 1, "running": 1, "pending": 2},
            "steps": steps,
        },
    }


FULL = "queue team-a is full"
WORKFLOWS = [
    workflow(
        "reports",
        "team-a",
        [
            {"name": "extract", "phase": "Succeeded"},
            {"name": "report", "index": 0, "phase": "Running", "reason": "Preempted"},
            {"name": "report", "index": 1, "phase": "Pending", "position": 3, "message": FULL},
            {"name": "report", "indexes": "2-5,9", "phase": "Pending", "message": FULL},
        ],
    ),
    workflow(
        "hotfix",
        "team-a",
        [{"name": "rebuild", "phase": "Pending", "position": 1, "message": "waiting for preemption"}],
        priority="demo-urgent",
    ),
    workflow("backfill", "team-b", [{"name": "b", "index": 3, "phase": "Pending", "position": 2}]),
    workflow("done", "team-b", [{"name": "b", "phase": "Pending", "position": 1}], phase="Succeeded"),
]

STREAM = {
    "metadata": {"name": "clicks", "namespace": "ns"},
    "spec": {"queue": "nightly", "replicas": 5},
    "status": {
        "phase": "Running",
        "replicas": 3,
        "readyReplicas": 3,
        "currentRevision": "abc",
        "conditions": [
            {
                "type": "Admitted",
                "status": "False",
                "message": "2 replica(s) waiting for admission; replica 3 (position 1): queue nightly is at "
                "its limit; replica 4 (position 2): queue nightly is at its limit",
            }
        ],
    },
}


def text(renderable, width: int = 200) -> str:
    console = Console(width=width, no_color=True, force_terminal=False, record=True)
    console.print(renderable)
    return console.export_text()


def test_queue_rows_form_the_tree_depth_first_children_by_name():
    rows = views.queue_rows(QUEUES)
    assert [(r.name, r.depth) for r in rows] == [
        ("demo", 0),
        ("ingest", 1),
        ("team-a", 1),
        ("nightly", 2),
        ("team-b", 1),
    ]
    team_a = rows[2]
    assert team_a.weight == 2
    assert team_a.resources == [views.ResourceUsage("cpu", 16000, 48000, 12500)]
    assert rows[1].rate == "2/s burst 2"


def test_a_queue_with_a_missing_parent_or_in_a_cycle_is_still_listed():
    rows = views.queue_rows([queue("orphan", "gone"), queue("x", "y"), queue("y", "x")])
    assert sorted(r.name for r in rows) == ["orphan", "x", "y"]
    assert all(r.depth == 0 for r in rows if r.name == "orphan")


def test_queues_table_shows_tree_glyphs_amounts_bars_and_counts():
    out = text(views.queues_table(views.queue_rows(QUEUES)))
    header = next(line for line in out.splitlines() if "QUEUE" in line)
    first = header.index("┃", 1)  # where the first column ends (tree glyphs use │ too)
    rows = [line for line in out.splitlines() if line.startswith("│")]
    lines = {line[1:first].strip(): line for line in rows}
    assert set(lines) == {"demo", "├─ ingest", "├─ team-a", "│  └─ nightly", "└─ team-b"}
    assert "12.5/16/48" in lines["├─ team-a"]
    assert "44/48/48" in lines["demo"]
    assert "rate 2/s burst 2" in lines["├─ ingest"]
    # team-b uses 20 of a 48 limit, guaranteed 16: 10 of 24 cells used, the guarantee mark at cell 8 is
    # covered by usage; ingest uses 4: its mark shows where its 8 of 16 end.
    assert "██████████··············" in lines["└─ team-b"]
    assert "██████······|···········" in lines["├─ ingest"]


def test_usage_bar_splits_guaranteed_and_borrowed():
    bar = views.usage_bar(views.ResourceUsage("cpu", guaranteed=16000, limit=48000, usage=24000), width=12)
    assert bar.plain == "██████······"
    styles = [bar[i].spans[0].style if bar[i].spans else "" for i in range(12)]
    assert styles[:4] == ["green"] * 4 and styles[4:6] == ["yellow"] * 2
    tiny = views.usage_bar(views.ResourceUsage("cpu", guaranteed=16000, limit=48000, usage=100), width=12)
    assert tiny.plain.startswith("█"), "a little usage is still visible"


def test_pending_rows_are_in_admission_order_per_queue():
    rows = views.pending_rows(WORKFLOWS, [STREAM])
    assert [(r.queue, r.position, r.name, r.workload, r.count) for r in rows] == [
        ("nightly", 1, "clicks", "replica 3", 1),
        ("nightly", 2, "clicks", "replica 4", 1),
        ("team-a", 1, "hotfix", "rebuild", 1),
        ("team-a", 3, "reports", "report[1]", 1),
        ("team-a", None, "reports", "report[2-5,9]", 5),  # not placed: after the placed ones
        ("team-b", 2, "backfill", "b[3]", 1),  # the finished workflow's stale entry is not pending
    ]
    assert rows[0].reason == "queue nightly is at its limit" and rows[0].kind == "StreamJob"
    assert rows[2].priority == "demo-urgent"


def test_pending_for_a_queue_includes_the_queues_below_it():
    scope = views.subtree(views.queue_rows(QUEUES), "team-a")
    assert scope == {"team-a", "nightly"}
    rows = views.pending_rows(WORKFLOWS, [STREAM], scope)
    assert {r.queue for r in rows} == {"team-a", "nightly"}


def test_pending_table_text():
    out = text(views.pending_table(views.pending_rows(WORKFLOWS, [STREAM]), limit=4))
    assert "ns/hotfix rebuild" in out and "waiting for preemption" in out and "demo-urgent" in out
    assert "... and 6 more waiting" in out  # 5 + 1 instances beyond the first 4 rows
    assert "nothing is waiting" in text(views.pending_table([]))
    per_queue = text(views.pending_table(views.pending_rows(WORKFLOWS, [STREAM]), per_queue=1))
    assert "ns/clicks replica 3" in per_queue and "... and 1 more in nightly" in per_queue
    assert "ns/hotfix rebuild" in per_queue and "... and 6 more in team-a" in per_queue
    assert "ns/backfill b[3]" in per_queue


def test_pending_shows_the_predicted_start_from_the_status():
    hotfix = workflow(
        "hotfix",
        "team-a",
        [{"name": "rebuild", "phase": "Pending", "position": 1, "eta": "2026-11-28T14:05:00Z"}],
    )
    rows = views.pending_rows([hotfix])
    assert rows[0].eta == 1795874700  # 2026-11-28T14:05:00Z
    out = text(views.pending_table(rows, now=1795874700 - 185))
    assert "ETA" in out and "in 3m05s" in out
    assert "now" in text(views.pending_table(rows, now=1795874700 + 5))  # the prediction has come
    # The operator's own prediction (the dashboard) wins; without one the status's is kept.
    assert views.with_etas(rows, lambda key: 1795874760)[0].eta == 1795874760
    assert views.with_etas(rows, lambda key: None)[0].eta == 1795874700


def test_workflow_and_stream_rows():
    rows = {r.name: r for r in views.workflow_rows(WORKFLOWS)}
    assert rows["reports"].preempted == 1 and rows["reports"].progress == "1/4"
    out = text(views.workflows_table(list(rows.values())))
    assert "ns/reports" in out and "1/4" in out
    (stream,) = views.stream_rows([STREAM])
    assert (stream.desired, stream.ready, stream.waiting, stream.revision) == (5, 3, 2, "abc")
    assert "●●●○○ 3/5" in text(views.streams_table([stream]))


def test_as_data_is_camel_case_without_layout_fields():
    (demo, *_) = views.queue_rows(QUEUES)
    data = views.as_data([demo])[0]
    assert "ancestorsLast" not in data and "last" not in data
    assert data["stopPolicy"] == "None"
    assert data["resources"] == [
        {"resource": "cpu", "guaranteed": 48000, "limit": 48000, "usage": 44000, "borrowed": 0}
    ]
    # What -o json and -o yaml print round-trips.
    assert json.loads(json.dumps(views.as_data(views.pending_rows(WORKFLOWS))))[0]["position"] == 1
    assert yaml.safe_load(yaml.safe_dump(views.as_data([demo])))[0]["name"] == "demo"


def test_cli_parses_the_view_commands():
    args = build_parser().parse_args(["pending", "team-a", "-o", "json"])
    assert (args.command, args.queue, args.output) == ("pending", "team-a", "json")
    args = build_parser().parse_args(["queues", "-o", "yaml"])
    assert (args.command, args.output) == ("queues", "yaml")
