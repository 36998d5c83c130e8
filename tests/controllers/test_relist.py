"""After the operator's watch re-lists (its resourceVersion was too old), the view forgets the workflows
and pods deleted while nothing was watched: the plans see them gone, not stale."""

from __future__ import annotations

from meson.controllers.handlers import forget_unlisted
from meson.controllers.store import Store
from meson.workflow import LABEL_WORKFLOW


def pod(name: str, workflow: str) -> dict:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "resourceVersion": "5",
            "labels": {LABEL_WORKFLOW: workflow},
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "resources": {"requests": {"cpu": "1"}}}]},
        "status": {"phase": "Running"},
    }


def test_what_the_listing_lacks_is_forgotten() -> None:
    view = Store()
    for name in ("kept", "gone"):
        view.on_workflow("ADDED", {"metadata": {"namespace": "ns", "name": name, "resourceVersion": "1"}})
        view.on_pod("ADDED", pod(f"{name}-a-r1-0", name))
    forget_unlisted(view, "workflow", {("ns", "kept")})
    forget_unlisted(view, "pod", {("ns", "kept-a-r1-0")})
    assert set(view.workflows) == {("ns", "kept")}
    assert set(view.pods) == {("ns", "kept-a-r1-0")}
    # The vanished pod's last sight is kept for its workflow's plan: a live pod that vanished is Gone.
    assert [o.phase for o in view.tombstones[("ns", "gone")].values()] == ["Gone"]
    assert not view.workflow_pods.get(("ns", "gone"))
