"""Queue hierarchy at apply time: a missing parent is allowed (like a Kueue cohort), a cycle never is, even
when it is built one queue at a time."""

from __future__ import annotations

from typing import Any

import pytest

from meson.api.validation import validate, validate_queue
from meson.controllers import admission


def _queue(name: str, parent: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"quota": {"cpu": {"guaranteed": 4}}}
    if parent:
        spec["parent"] = parent
    return {"apiVersion": "meson.dev/v1alpha1", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


class FakeCluster:
    """The queues the webhook would list: it admits what review() allows, as the API server would."""

    def __init__(self) -> None:
        self.queues: dict[str, str | None] = {}

    def parents(self, exclude: str | None = None, memo: object = None) -> dict[str, str | None]:
        return {name: parent for name, parent in self.queues.items() if name != exclude}

    def apply(self, obj: dict[str, Any]) -> list[str]:
        problems = admission.review("Queue", obj)
        if not problems:
            self.queues[obj["metadata"]["name"]] = obj["spec"].get("parent")
        return problems


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(admission, "queue_parents", fake.parents)
    return fake


def test_missing_parent_is_allowed():
    assert validate("Queue", _queue("a", parent="not-yet"), queue_parents={}) == []
    assert validate("Queue", _queue("a", parent="not-yet"), queue_parents={"other": None}) == []
    assert validate("Queue", _queue("a", parent="not-yet")) == []  # the controller: no listing


def test_own_parent_is_a_cycle_even_without_the_listing():
    expected = ["spec.parent: queue hierarchy cycle: a -> a"]
    assert validate("Queue", _queue("a", parent="a")) == expected
    assert validate("Queue", _queue("a", parent="a"), queue_parents={}) == expected


def test_cycle_in_two_steps_is_refused_at_the_second(cluster):
    assert cluster.apply(_queue("a", parent="b")) == []  # b does not exist yet: allowed
    assert cluster.apply(_queue("b", parent="a")) == ["spec.parent: queue hierarchy cycle: b -> a -> b"]
    assert cluster.queues == {"a": "b"}
    assert cluster.apply(_queue("b")) == []  # b as a root closes nothing


def test_cycle_in_three_steps(cluster):
    assert cluster.apply(_queue("a", parent="b")) == []
    assert cluster.apply(_queue("b", parent="c")) == []
    assert cluster.apply(_queue("c", parent="a")) == ["spec.parent: queue hierarchy cycle: c -> a -> b -> c"]


def test_reparenting_is_checked_against_the_others_only(cluster):
    for obj in (_queue("root"), _queue("a", parent="root"), _queue("b", parent="a")):
        assert cluster.apply(obj) == []
    # a's own old entry (parent root) is left out: moving a under b closes a -> b -> a.
    assert cluster.apply(_queue("a", parent="b")) == ["spec.parent: queue hierarchy cycle: a -> b -> a"]
    assert cluster.apply(_queue("b", parent="root")) == []
    assert cluster.apply(_queue("a", parent="b")) == []  # now b hangs off root: no cycle


def test_joining_an_existing_cycle_is_refused():
    # A cycle made while the webhook was off: a new queue under it would never reach a root either.
    parents = {"x": "y", "y": "x"}
    assert validate_queue(_queue("new", parent="x"), parents) == [
        "spec.parent: queue hierarchy cycle: new -> x -> y -> x"
    ]


def test_deep_chain_without_cycle():
    parents = {f"q{i}": f"q{i + 1}" for i in range(200)}
    assert validate_queue(_queue("leaf", parent="q0"), parents) == []


@pytest.mark.parametrize(
    ("guaranteed", "limit", "ok"),
    [("1500m", "2", True), ("2", "2000m", True), ("1Gi", "1G", False), (8, 4, False), ("0.5", "500m", True)],
)
def test_guaranteed_above_limit_is_refused_in_any_units(guaranteed: Any, limit: Any, ok: bool) -> None:
    # Compared as quantities, not as strings: 1Gi is more than 1G, 0.5 equals 500m.
    queue = _queue("q")
    queue["spec"]["quota"] = {"cpu": {"guaranteed": guaranteed, "limit": limit}}
    problems = validate("Queue", queue)
    if ok:
        assert problems == []
    else:
        assert problems == [
            f"spec.quota.cpu: guaranteed ({guaranteed}) must be less than or equal to limit ({limit})"
        ]
