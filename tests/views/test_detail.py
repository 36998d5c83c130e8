"""`meson workflow get`, `meson workflow logs` and `meson streamjob get` from objects shaped like the API
server's answers: the DAG's steps with phase, attempts, node and duration, the tree they print as, a
stream job's revisions and replicas, and the logs of pods whose node serves none."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from kubernetes.client.exceptions import ApiException

from meson import views
from meson.cli import build_parser, workflow_logs
from tests.views.test_views import text

STARTED = "2026-11-28T12:00:00Z"
T0 = datetime(2026, 11, 28, 12, tzinfo=UTC).timestamp()


def etl() -> dict:
    def step(name: str, deps: list[str] | None = None) -> dict:
        return {"name": name, "dependencies": deps} if deps else {"name": name}

    return {
        "metadata": {"name": "etl", "namespace": "ns"},
        "spec": {
            "queue": "analytics",
            "steps": [
                step("extract"),
                step("transform", ["extract"]),
                step("load", ["transform", "extract"]),
                step("report", ["extract"]),
            ],
            "onExit": {"name": "notify"},
        },
        "status": {
            "phase": "Running",
            "progress": "1/5",
            "startedAt": STARTED,
            "steps": [
                {"name": "extract", "phase": "Succeeded", "attempts": 2, "start": 0, "end": 42, "node": "n1"},
                {
                    "name": "transform",
                    "index": 0,
                    "phase": "Running",
                    "attempts": 1,
                    "start": 50,
                    "node": "n1",
                },
                {
                    "name": "transform",
                    "index": 1,
                    "phase": "Succeeded",
                    "attempts": 1,
                    "start": 45,
                    "end": 60,
                },
                {"name": "transform", "indexes": "2-4", "phase": "Pending", "position": 3, "message": "full"},
                {"name": "report", "phase": "Pending", "position": 7, "message": "queue analytics is full"},
            ],
        },
    }


def test_workflow_detail_aggregates_each_steps_instances():
    detail = views.workflow_detail(etl(), now=T0 + 100)
    steps = {s.name: s for s in detail.steps}
    assert list(steps) == ["extract", "transform", "load", "report", "notify"]
    assert steps["extract"].phase == "Succeeded" and steps["extract"].duration == 42
    assert steps["extract"].attempts == 2 and steps["extract"].node == "n1"
    t = steps["transform"]
    # Running wins over Pending and Succeeded; 1 + 1 + 3 instances; running until now (100 s in).
    assert (t.phase, t.instances, t.phases) == ("Running", 5, {"Running": 1, "Succeeded": 1, "Pending": 3})
    assert t.duration == 100 - 45 and t.position == 3
    assert steps["load"].phase == "Waiting" and steps["load"].duration is None
    assert steps["notify"].exit_step and steps["load"].dependencies == ("transform", "extract")
    assert views.dag_levels(detail.steps) == {
        "extract": 0,
        "transform": 1,
        "report": 1,
        "load": 2,
        "notify": 3,
    }


def test_workflow_tree_nests_steps_under_their_deepest_dependency():
    out = text(views.workflow_tree(views.workflow_detail(etl(), now=T0 + 100)))
    lines = out.splitlines()
    assert "ns/etl" in lines[0] and "Running" in lines[0] and "queue analytics" in lines[0]
    (load,) = [line for line in lines if "load" in line]
    (transform,) = [line for line in lines if "transform" in line and "load" not in line]
    assert load.index("load") > transform.index("transform"), "load is drawn under transform"
    assert "also after extract" in load
    (extract,) = [line for line in lines if "extract  Succeeded" in line]
    assert "attempts 2" in extract and "node n1" in extract and "42s" in extract
    assert "1m40s" not in out and "55s" in out  # transform: 45 s to now (100 s)
    assert "position 7" in out and "queue analytics is full" in out
    assert "on exit: notify" in out


def test_workflow_detail_as_json():
    data = views.as_data([views.workflow_detail(etl(), now=T0 + 100)])[0]
    assert json.loads(json.dumps(data))["steps"][1]["phases"] == {"Running": 1, "Succeeded": 1, "Pending": 3}


def pod(name: str, slot: str, revision: str, ready: bool, restarts: int = 0) -> dict:
    return {
        "metadata": {"name": name, "labels": {"meson.dev/slot": slot, "meson.dev/revision": revision}},
        "spec": {"nodeName": "n2"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"restartCount": restarts}],
        },
    }


def test_stream_detail_lists_revisions_newest_first_and_replicas_by_slot():
    job = {
        "metadata": {"name": "clicks", "namespace": "ns"},
        "spec": {"queue": "streaming", "replicas": 3},
        "status": {
            "phase": "Updating",
            "replicas": 3,
            "readyReplicas": 2,
            "currentRevision": "c3",
            "stableRevision": "b2",
            "revisionHistory": ["a1", "b2", "c3"],
        },
    }
    pods = [pod("clicks-c3-10-0", "10", "c3", False), pod("clicks-b2-1-0", "1", "b2", True, 2)]
    pods.append(pod("clicks-b2-2-0", "2", "b2", True))
    detail = views.stream_detail(job, pods)
    assert [(r.revision, r.replicas, r.current, r.stable) for r in detail.revisions] == [
        ("c3", 1, True, False),
        ("b2", 2, False, True),
        ("a1", 0, False, False),
    ]
    assert [p.slot for p in detail.pods] == ["1", "2", "10"]
    out = text(views.stream_detail_view(detail))
    assert "ns/clicks" in out and "ready 2/3" in out and "current" in out and "stable" in out
    assert "clicks-b2-1-0" in out


class FakeCore:
    """The two calls `meson workflow logs` makes, answering like the API server does for a pod on a kwok
    node (no kubelet to ask) or a real one."""

    def __init__(self, pods: list, logs: dict[str, str]) -> None:
        self.pods, self.logs, self.selectors = pods, logs, []

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> SimpleNamespace:
        self.selectors.append(label_selector)
        step = label_selector.partition("meson.dev/step=")[2]
        return SimpleNamespace(items=[p for p in self.pods if not step or p.metadata.labels["s"] == step])

    def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str, tail_lines: int | None
    ) -> str:
        if name not in self.logs:
            message = f"no preferred addresses found; known addresses: [] for {name}"
            raise _api(400, json.dumps({"kind": "Status", "message": message}))
        return self.logs[name]


def _api(status: int, body: str) -> ApiException:
    e = ApiException(status=status, reason="Bad Request")
    e.body = body
    return e


def fake_pod(name: str, step: str, created: int) -> SimpleNamespace:
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=name,
            namespace="ns",
            creation_timestamp=created,
            labels={"meson.dev/step": step, "meson.dev/run": "0", "s": step},
        ),
        spec=SimpleNamespace(node_name="kwok-1", containers=[SimpleNamespace(name="main")]),
        status=SimpleNamespace(phase="Succeeded"),
    )


def test_workflow_logs_print_each_pod_and_say_when_its_node_serves_none(capsys):
    core = FakeCore(
        [fake_pod("etl-report-0", "report", 2), fake_pod("etl-extract-0", "extract", 1)],
        {"etl-extract-0": "rows: 10\n"},
    )
    assert workflow_logs(SimpleNamespace(core=core), etl(), None, None) == 0
    out = capsys.readouterr().out
    assert (
        out.index("==> etl-extract-0 (step extract") < out.index("rows: 10") < out.index("==> etl-report-0")
    )
    assert "no logs" in out and "kwok-1" in out and "no preferred addresses" in out
    # Only a step's pods; nothing readable is exit status 1.
    assert workflow_logs(SimpleNamespace(core=core), etl(), "report", 5) == 1
    assert core.selectors[-1] == "meson.dev/workflow=etl,meson.dev/step=report"


def test_workflow_logs_of_an_unknown_step_names_the_steps(capsys):
    assert workflow_logs(SimpleNamespace(core=FakeCore([], {})), etl(), "nope", None) == 1
    assert "has no step nope (steps: extract, load, notify, report, transform)" in capsys.readouterr().err


def test_cli_parses_the_detail_commands_and_keeps_the_operations():
    parse = build_parser().parse_args
    args = parse(["workflow", "get", "etl", "-n", "ns", "-o", "yaml"])
    assert (args.operation, args.name, args.namespace, args.output) == ("get", "etl", "ns", "yaml")
    args = parse(["workflow", "logs", "etl", "extract", "--tail", "10"])
    assert (args.operation, args.step, args.tail) == ("logs", "extract", 10)
    assert parse(["streamjob", "get", "clicks"]).operation == "get"
    assert parse(["workflow", "suspend", "etl"]).operation == "suspend"
