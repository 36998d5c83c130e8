"""The operator's own list-and-watch (meson/adapters/watch.py) against the real API server: a watch from a
resourceVersion the server no longer has ("410 Expired") lists again, hands over what it listed (the view
forgets the rest), and then follows creates and deletes."""

from __future__ import annotations

import asyncio
import time

from e2e.conftest import Cluster
from meson.adapters import kube, watch


def pod_manifest(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], "nodeSelector": {"none": "none"}},
    }


def test_a_too_old_version_relists_and_then_the_watch_follows_creates_and_deletes(
    cluster: Cluster, namespace: str
) -> None:
    cfg = kube.load_client_config(str(cluster.kubeconfig))
    core = kube.Clients.from_config(cfg).core
    core.create_namespaced_pod(namespace, pod_manifest("before"))
    seen: list[tuple[str, str]] = []
    relisted: list[set[tuple[str, str]]] = []

    def record(kind: str, obj: dict) -> None:
        if obj["metadata"].get("namespace") == namespace:
            seen.append((kind, obj["metadata"]["name"]))

    async def main() -> None:
        # From resourceVersion 1, long compacted away: the server answers 410 Expired.
        watcher = watch.Watcher(
            cfg, "/api/v1/pods", record, relisted.append, name="pods", resource_version="1"
        )
        task = asyncio.create_task(watcher.run())

        async def until(what: tuple[str, str]) -> None:
            deadline = time.monotonic() + 60
            while what not in seen:
                assert time.monotonic() < deadline, f"no {what} in {seen}"
                await asyncio.sleep(0.1)

        try:
            await until(("ADDED", "before"))
            assert watcher.relists == 1 and (namespace, "before") in relisted[0]
            await asyncio.to_thread(core.create_namespaced_pod, namespace, pod_manifest("after"))
            await until(("ADDED", "after"))
            await asyncio.to_thread(core.delete_namespaced_pod, "after", namespace, grace_period_seconds=0)
            await until(("DELETED", "after"))
        finally:
            await watch.stop([task])

    asyncio.run(main())
    assert seen.count(("ADDED", "before")) == 1 and len(relisted) == 1
