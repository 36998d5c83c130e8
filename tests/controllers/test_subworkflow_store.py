"""The view's index of sub-workflow children: a parent sees the Workflows it owns (by uid), including the
last sight of deleted ones, and each of their events moves the parent's version (so it is planned again)."""

from __future__ import annotations

from meson.controllers.store import Store


def _wf(name: str, uid: str, rv: int, **meta: object) -> dict:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": str(rv), **meta},
        "spec": {"steps": []},
    }


def _child(name: str, owner_uid: str, rv: int, phase: str | None = None, **labels: str) -> dict:
    obj = _wf(
        name,
        f"uid-{name}",
        rv,
        labels={
            "meson.dev/parent": "parent",
            "meson.dev/instance": "etl",
            "meson.dev/run": "1",
            "meson.dev/attempt": "1",
            **labels,
        },
        ownerReferences=[{"kind": "Workflow", "name": "parent", "uid": owner_uid, "controller": True}],
        creationTimestamp="2025-06-01T00:00:00Z",
    )
    if phase:
        obj["status"] = {"phase": phase, "message": "step x failed", "outputs": {"x": "1"}}
    return obj


def test_children_are_the_owned_workflows_and_their_events_replan_the_parent():
    store = Store()
    store.on_workflow("ADDED", _wf("parent", "uid-parent", 1))
    before = store.pod_versions[("ns", "parent")]
    store.on_workflow("ADDED", _child("parent-etl-r1", "uid-parent", 2))
    store.on_workflow("ADDED", _child("impostor", "uid-someone-else", 3))  # the label alone is not enough
    assert store.pod_versions[("ns", "parent")] == before + 2
    (child,) = store.child_observations(("ns", "parent"))
    assert (child.name, child.instance, child.run, child.attempt, child.phase) == (
        "parent-etl-r1",
        "etl",
        1,
        1,
        None,
    )

    store.on_workflow("MODIFIED", _child("parent-etl-r1", "uid-parent", 4, phase="Failed"))
    store.on_workflow("DELETED", _child("parent-etl-r1", "uid-parent", 5, phase="Failed"))
    (gone,) = store.child_observations(("ns", "parent"))
    assert gone.gone and gone.phase == "Failed" and gone.message == "step x failed"
    assert store.pod_versions[("ns", "parent")] == before + 4

    store.on_workflow("DELETED", _wf("parent", "uid-parent", 6))
    assert store.child_observations(("ns", "parent")) == []
    store.on_workflow("DELETED", _child("parent-etl-r2", "uid-parent", 7))  # the GC, after the parent
    assert ("ns", "parent") not in store.child_tombstones and ("ns", "parent") not in store.children
