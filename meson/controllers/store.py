"""The operator's in-memory view of the cluster, fed by watch events and by the loop's own writes.

Only the event-loop thread touches it. Watch handlers replace objects and wake the scheduling loop;
the loop also records what it has just written (a created pod, a patched status) straight away, so the
next cycle does not act on a view that predates its own writes (the "expectations" problem): a stale
watch event never rolls an object back, because an older resourceVersion does not replace a newer one.

It also says what changed, so a cycle costs what changed rather than everything: a version per workflow
that moves with each event of its pods, a version of the world shared by every workflow (nodes added or
removed, namespaces, PriorityClasses, Queues), and the usage of every node kept up to date pod by pod.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from meson.controllers import translate
from meson.stream import LABEL_REVISION, LABEL_STREAMJOB, ReplicaPod
from meson.workflow import LABEL_PARENT, LABEL_WORKFLOW, ChildObservation, PodObservation

Key = tuple[str, str]  # (namespace, name)
#: Longest ConfigMap value the view keeps: a semaphore limit is a small integer, anything longer is not one.
MAX_LIMIT_CHARS = 20


def resource_version(obj: dict) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _newer(old: dict | None, new: dict) -> bool:
    return old is None or resource_version(new) >= resource_version(old) or resource_version(new) == 0


@dataclass
class PodRecord:
    """What the view keeps of every pod: enough for node capacity, and the engine's view of ours."""

    node: str | None
    request: dict[str, int]
    terminal: bool
    workflow: Key | None
    observation: PodObservation | None
    resource_version: int
    stream: Key | None = None  # the StreamJob it is a replica of


@dataclass
class Store:
    workflows: dict[Key, dict] = field(default_factory=dict)
    cronworkflows: dict[Key, dict] = field(default_factory=dict)
    streamjobs: dict[Key, dict] = field(default_factory=dict)
    # Replica pods per StreamJob (by pod name), the last one per slot that vanished without Meson deleting
    # it (a tombstone, phase Gone), and the pod templates of its recorded revisions (ControllerRevisions).
    stream_pods: dict[Key, dict[str, ReplicaPod]] = field(default_factory=lambda: defaultdict(dict))
    stream_gone: dict[Key, dict[int, ReplicaPod]] = field(default_factory=lambda: defaultdict(dict))
    revisions: dict[Key, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))
    queues: dict[str, dict] = field(default_factory=dict)
    nodes: dict[str, dict] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)
    default_priority: int = 0
    # The short values of every ConfigMap's data (see on_config_map), for semaphore limits.
    config_maps: dict[Key, dict[str, str | None]] = field(default_factory=dict)
    _config_map_rv: dict[Key, int] = field(default_factory=dict)
    pods: dict[Key, PodRecord] = field(default_factory=dict)
    # Our pods per workflow, and the last sight of those deleted before they finished.
    workflow_pods: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    tombstones: dict[Key, dict[str, PodObservation]] = field(default_factory=lambda: defaultdict(dict))
    # Child Workflows of sub-workflow steps per parent (by name), and the last sight of those deleted.
    children: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    child_tombstones: dict[Key, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))
    # Nodes seen deleted: their pods are lost even before the pod garbage collector removes them.
    deleted_nodes: set[str] = field(default_factory=set)
    _replica_rv: dict[Key, int] = field(default_factory=dict)  # by (namespace, pod name)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # What changed (see the module's docstring): a workflow's plan is reused while neither moved.
    pod_versions: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    # Workflows whose object, status or pods moved since the loop last took them (see take_touched).
    touched: set[Key] = field(default_factory=set)
    world_version: int = 0
    usage_version: int = 0  # moves with node usage (see _count): the core's reasons read it
    _usage: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def pods_moved(self, key: Key) -> None:
        """A workflow's pods (or child workflows) moved: its plan is made again."""
        self.pod_versions[key] += 1
        self.touched.add(key)

    def take_touched(self) -> set[Key]:
        """The workflows touched since the last call (the loop visits them next, with the unsettled)."""
        touched, self.touched = self.touched, set()
        return touched

    # --- Meson objects -------------------------------------------------------------------------
    def put(self, table: dict, key: Any, obj: dict) -> None:
        old = table.get(key)
        if old is not None and resource_version(obj) and resource_version(obj) == resource_version(old):
            return  # the same version (the echo of our own write, already in the view): nothing moved
        if _newer(old, obj):
            table[key] = obj
            self.wake.set()

    def drop(self, table: dict, key: Any) -> None:
        if table.pop(key, None) is not None:
            self.wake.set()

    def on_workflow(self, event: str, obj: dict) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        parent = (obj["metadata"].get("labels") or {}).get(LABEL_PARENT)
        if parent:  # a sub-workflow: its parent is planned again, as for an event of one of its pods
            parent_key = (key[0], parent)
            self.pods_moved(parent_key)
            self.wake.set()  # even for the echo of our own write to the child, which put() skips
            if event == "DELETED":
                self.children[parent_key].discard(key[1])
                if not self.children[parent_key]:
                    del self.children[parent_key]
                if parent_key in self.workflows:  # a parent being deleted takes its children along
                    self.child_tombstones[parent_key][key[1]] = obj
            else:
                self.children[parent_key].add(key[1])
        self.touched.add(key)
        if event == "DELETED":
            self.drop(self.workflows, key)
            self.tombstones.pop(key, None)
            self.pod_versions.pop(key, None)
            self.children.pop(key, None)
            self.child_tombstones.pop(key, None)
        else:
            self.put(self.workflows, key, obj)

    def on_cronworkflow(self, event: str, obj: dict) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if event == "DELETED":
            self.drop(self.cronworkflows, key)
        else:
            self.put(self.cronworkflows, key, obj)

    def on_streamjob(self, event: str, obj: dict) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if event == "DELETED":
            self.drop(self.streamjobs, key)
            self.stream_gone.pop(key, None)
            self.revisions.pop(key, None)
        else:
            self.put(self.streamjobs, key, obj)

    def on_controller_revision(self, event: str, obj: dict) -> None:
        """A StreamJob's recorded revision (other controllers' ControllerRevisions are ignored)."""
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        job, revision = labels.get(LABEL_STREAMJOB), labels.get(LABEL_REVISION)
        if not job or not revision:
            return
        key = (meta["namespace"], job)
        if event == "DELETED":
            self.revisions[key].pop(revision, None)
        else:
            self.revisions[key][revision] = (obj.get("data") or {}).get("template") or {}
        self.wake.set()

    def on_queue(self, event: str, obj: dict) -> None:
        old = self.queues.get(obj["metadata"]["name"])
        if event == "DELETED" or old is None or old.get("spec") != obj.get("spec"):
            self.world_version += 1  # not for its status: the loop writes it at every admission
        if event == "DELETED":
            self.drop(self.queues, obj["metadata"]["name"])
        else:
            self.put(self.queues, obj["metadata"]["name"], obj)

    # --- cluster objects -----------------------------------------------------------------------
    def on_node(self, event: str, obj: dict) -> None:
        if event == "DELETED":
            self.world_version += 1
            self.drop(self.nodes, obj["metadata"]["name"])
            self.deleted_nodes.add(obj["metadata"]["name"])
        else:
            self.deleted_nodes.discard(obj["metadata"]["name"])
            old = self.nodes.get(obj["metadata"]["name"])
            if old is None:
                self.world_version += 1
            if (
                old is None
                or translate.node_schedulable(old) != translate.node_schedulable(obj)
                or (
                    (old.get("status") or {}).get("allocatable")
                    != (obj.get("status") or {}).get("allocatable")
                )
            ):
                self.wake.set()  # heartbeats change nothing the scheduler looks at
            self.nodes[obj["metadata"]["name"]] = obj

    def on_namespace(self, event: str, obj: dict) -> None:
        self.world_version += 1
        name = obj["metadata"]["name"]
        if event == "DELETED":
            self.namespaces.pop(name, None)
        else:
            self.namespaces[name] = obj["metadata"].get("labels") or {}
        self.wake.set()

    def on_priority_class(self, event: str, obj: dict) -> None:
        self.world_version += 1
        name = obj["metadata"]["name"]
        if event == "DELETED":
            self.priorities.pop(name, None)
        else:
            self.priorities[name] = int(obj.get("value", 0))
            if obj.get("globalDefault"):
                self.default_priority = int(obj.get("value", 0))
        self.wake.set()

    def on_config_map(self, event: str, obj: dict) -> None:
        """ConfigMaps may give semaphore limits (configMapKeyRef). Users own them, so no label selects them:
        every one is watched, but only short values are kept (a limit is a small integer), and the loop is
        woken only when those change (not for a lease renewal or a stale event)."""
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if event == "DELETED":
            self._config_map_rv.pop(key, None)
            if self.config_maps.pop(key, None) is not None:
                self.wake.set()
            return
        version = resource_version(obj)
        if version and version < self._config_map_rv.get(key, 0):
            return
        self._config_map_rv[key] = version
        data = {k: v if len(v) <= MAX_LIMIT_CHARS else None for k, v in (obj.get("data") or {}).items()}
        if self.config_maps.get(key) != data:
            self.config_maps[key] = data
            self.wake.set()

    def priority_of(self, class_name: str | None) -> int:
        if not class_name:
            return self.default_priority
        return self.priorities.get(class_name, self.default_priority)

    # --- pods ----------------------------------------------------------------------------------
    def on_pod(self, event: str, obj: dict) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        wf_name = (meta.get("labels") or {}).get(LABEL_WORKFLOW)
        wf_key = (meta["namespace"], wf_name) if wf_name else None
        job_name = (meta.get("labels") or {}).get(LABEL_STREAMJOB)
        if job_name:
            self._on_replica(event, obj, (meta["namespace"], job_name))
        if event == "DELETED":
            if wf_key is not None:
                self.pods_moved(wf_key)
            old = self.pods.pop(key, None)
            self._count(old, -1)
            if wf_key is not None:
                self.workflow_pods[wf_key].discard(meta["name"])
                # Its last sight is kept, finished ones too: a pod deleted right after it succeeded (a
                # preemption that crossed its end) must still count as succeeded if the workflow's status
                # did not record it yet.
                self.tombstones[wf_key][meta["name"]] = translate.pod_observation(
                    obj, gone=True, nodes=self.nodes
                )
            if old is not None:
                self.wake.set()
            return
        old = self.pods.get(key)
        if old is not None and resource_version(obj) and resource_version(obj) < old.resource_version:
            return
        phase = (obj.get("status") or {}).get("phase")
        record = PodRecord(
            node=(obj.get("spec") or {}).get("nodeName"),
            request=translate.pod_request(obj.get("spec") or {}),
            terminal=phase in translate.TERMINAL,
            workflow=wf_key,
            observation=translate.pod_observation(obj) if wf_key else None,
            resource_version=resource_version(obj),
            stream=(meta["namespace"], job_name) if job_name else None,
        )
        self._count(old, -1)
        self.pods[key] = record
        self._count(record, 1)
        moved = old is None or old.terminal != record.terminal or old.node != record.node
        if wf_key is not None:
            self.workflow_pods[wf_key].add(meta["name"])
            # Most pod events change nothing the engine sees (conditions, our own create's echo): its
            # workflow's plan is reused.
            if old is None or old.observation != record.observation:
                self.pods_moved(wf_key)
                moved = True
        if moved or job_name:
            self.wake.set()

    def vanished(self, namespace: str, name: str, by_meson: bool) -> None:
        """Meson's deletion of a pod found it already gone: the watch missed its deletion (a pod deleted
        while the operator listed the world, before its watch started). Forget it as a DELETED event
        would; its end is unknown, so a live one is Gone (Preempted when Meson was evicting it)."""
        key = (namespace, name)
        rec = self.pods.pop(key, None)
        if rec is None:
            return
        self._count(rec, -1)
        if rec.workflow is not None:
            self.pods_moved(rec.workflow)
            self.workflow_pods[rec.workflow].discard(name)
            obs = rec.observation
            if obs is not None and rec.terminal:
                self.tombstones[rec.workflow][name] = obs
            elif obs is not None:
                failure = "Preempted" if by_meson else "Evicted"
                self.tombstones[rec.workflow][name] = replace(obs, phase="Gone", failure=failure)
        if rec.stream is not None:
            self.stream_pods[rec.stream].pop(name, None)
            self._replica_rv.pop(key, None)
        self.wake.set()

    def _on_replica(self, event: str, obj: dict, job: Key) -> None:
        name = obj["metadata"]["name"]
        rv_key = (job[0], name)
        old = self.stream_pods[job].get(name)
        if event != "DELETED":
            if (
                old is None
                or not resource_version(obj)
                or resource_version(obj) >= self._replica_rv.get(rv_key, 0)
            ):
                self._replica_rv[rv_key] = resource_version(obj)
                self.stream_pods[job][name] = translate.replica_pod(obj)
            return
        self.stream_pods[job].pop(name, None)
        self._replica_rv.pop(rv_key, None)
        gone = translate.replica_pod(obj, gone=True)
        if gone.phase == "Gone":  # vanished while live, and not by Meson's decision: the engine replaces it
            self.stream_gone[job][gone.slot] = gone

    def replicas(self, job: Key) -> list[ReplicaPod]:
        """A StreamJob's pods as its engine sees them: the live ones, and tombstones of slots without one."""
        pods = list(self.stream_pods.get(job, {}).values())
        seen = {(p.slot, p.run) for p in pods}
        return pods + [t for t in self.stream_gone.get(job, {}).values() if (t.slot, t.run) not in seen]

    def forget_tombstones(self) -> None:
        """Drop the last sights of pods whose workflow is gone (its pods' deletions, by the garbage
        collector, are often seen after the workflow's own)."""
        for key in [k for k in self.tombstones if k not in self.workflows]:
            del self.tombstones[key]

    def observations(self, wf_key: Key) -> list[PodObservation]:
        ns = wf_key[0]
        live = [self.pods[(ns, n)].observation for n in sorted(self.workflow_pods.get(wf_key, ()))]
        gone = [
            o
            for n, o in sorted(self.tombstones.get(wf_key, {}).items())
            if n not in self.workflow_pods[wf_key]
        ]
        return [o for o in live if o is not None] + gone

    def child_observations(self, parent: Key) -> list[ChildObservation]:
        """The child Workflows of ``parent`` (owned by it: by uid, so a namesake's children or a Workflow
        that only carries the label are not), live ones and the last sight of the deleted ones."""
        wf = self.workflows.get(parent)
        uid = (wf or {}).get("metadata", {}).get("uid")
        if not uid:
            return []
        ns = parent[0]
        live = [
            self.workflows[(ns, n)]
            for n in sorted(self.children.get(parent, ()))
            if (ns, n) in self.workflows
        ]
        names = {obj["metadata"]["name"] for obj in live}
        gone = [o for n, o in sorted(self.child_tombstones.get(parent, {}).items()) if n not in names]
        out = []
        for obj, deleted in [*((o, False) for o in live), *((o, True) for o in gone)]:
            child = translate.child_observation(obj, uid, gone=deleted)
            if child is not None:
                out.append(child)
        return out

    def _count(self, rec: PodRecord | None, sign: int) -> None:
        """Add (sign 1) or remove (-1) a pod's requests to its node's usage: only bound, unfinished pods."""
        if rec is None or not rec.node or rec.terminal:
            return
        self.usage_version += 1
        used = self._usage[rec.node]
        for k, v in rec.request.items():
            left = used.get(k, 0) + sign * v
            if left:
                used[k] = left
            else:
                used.pop(k, None)
        if not used:
            del self._usage[rec.node]

    def node_usage(self) -> dict[str, dict[str, int]]:
        """What the bound, unfinished pods request on each node (kept up to date with every pod event)."""
        return self._usage

    def node_usage_from_scratch(self) -> dict[str, dict[str, int]]:
        """The same as :meth:`node_usage`, summed over every pod (the check of the incremental sum)."""
        used: dict[str, dict[str, int]] = defaultdict(dict)
        for rec in self.pods.values():
            if rec.node and not rec.terminal:
                u = used[rec.node]
                for k, v in rec.request.items():
                    u[k] = u.get(k, 0) + v
        return used
