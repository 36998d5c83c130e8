"""An in-memory Kubernetes API for driving the real scheduling loop without an API server.

:class:`FakeCluster` implements exactly the client methods the loop calls (``meson.controllers.writer``,
``meson.adapters.kube``/``events``/``dryrun``), with the API server's semantics where they matter:
deterministic names conflict (409), status patches are JSON merge patches (null deletes a key) that bump
the resourceVersion, a pod naming an unknown PriorityClass is refused 403, and errors are real
ApiExceptions carrying a JSON ``Status`` body. Tests inject faults per call (:meth:`FakeCluster.inject`).

Every write is fed back to the operator's :class:`Store` as a watch event, on the event loop's thread, before
the next cycle (``watch_lag`` cycles later to simulate a lagging watch). :meth:`FakeCluster.run_pods` plays
kube-scheduler and kubelet: it binds pending pods to fake nodes that have room and finishes them after their
``sim.meson.dev/duration`` with their ``sim.meson.dev/exit-code`` (only in their first
``sim.meson.dev/fail-attempts`` runs when that is set), as kwok does in the e2e cluster.

:class:`Operator` is one operator process: a Store primed from the world (as ``handlers.prime`` does) and the
real ``SchedulingLoop``, run one ``cycle()`` at a time. :func:`run` drives cycles, pods and the clock.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

from meson.adapters import kube
from meson.api.quantity import canonical
from meson.controllers import translate
from meson.controllers.scheduling import CycleResult, SchedulingLoop
from meson.controllers.store import Store
from meson.workflow import LABEL_QUEUE, LABEL_RUN, LABEL_WORKFLOW, parse_time, rfc3339

T = TypeVar("T")
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DURATION = "sim.meson.dev/duration"
EXIT_CODE = "sim.meson.dev/exit-code"
FAIL_ATTEMPTS = "sim.meson.dev/fail-attempts"  # with exit-code: only the first N runs fail (as in kwok)
REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    413: "RequestEntityTooLarge",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}
PLURALS = {"Workflow": "workflows", "CronWorkflow": "cronworkflows", "Queue": "queues"}
# Store handler per resource, in the order handlers.prime lists the world.
FEEDS = {
    "nodes": "on_node",
    "namespaces": "on_namespace",
    "priorityclasses": "on_priority_class",
    "queues": "on_queue",
    "workflows": "on_workflow",
    "cronworkflows": "on_cronworkflow",
    "pods": "on_pod",
    "configmaps": "on_config_map",
}


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += seconds


class OperatorKilled(Exception):
    """A call made by an operator process that has been killed: it never reaches the API server."""


def api_error(status: int, message: str) -> ApiException:
    """What the kubernetes client raises for an error response: the Status object is the body."""
    reason = REASONS.get(status, "Error")
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
         "code": status}
    )  # fmt: skip
    exc.headers = {}
    return exc


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = json_merge_patch(out.get(k), v)
    return out


def seconds(text: str) -> float:
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))


@dataclass
class Fault:
    """Calls matching ``verb`` (create, patch, patch_status, delete, dry_run) on ``resource`` (pods,
    workflows, queues, cronworkflows, events) fail with ``status``; ``times`` of them (None: all)."""

    verb: str
    resource: str
    status: int
    message: str
    times: int | None = None
    namespace: str | None = None
    name: str | None = None
    when: Callable[[dict], bool] | None = None  # on the request body
    lost_response: bool = False  # the request is carried out, then the client gets the error
    hits: int = 0

    def applies(self, verb: str, resource: str, namespace: str | None, name: str, body: dict) -> bool:
        return (
            self.verb == verb
            and self.resource == resource
            and (self.times is None or self.times > 0)
            and self.namespace in (None, namespace)
            and self.name in (None, name)
            and (self.when is None or self.when(body))
        )


@dataclass
class RawResponse:
    """What a ``_preload_content=False`` call returns: the undecoded body."""

    data: bytes
    status: int = 201
    reason: str = "Created"

    def read(self) -> bytes:
        return self.data


class FakeCluster:
    feeds: dict[str, str] = FEEDS  # resource -> the Store method its watch events go to

    def __init__(self, clock: FakeClock | None = None, nodes: int = 3, node_cpu: str = "32") -> None:
        self.clock = clock or FakeClock()
        self.lock = threading.RLock()
        self.objects: dict[str, dict[tuple[str | None, str], dict]] = {plural: {} for plural in self.feeds}
        self.events: list[dict] = []
        self.created_pods: list[tuple[str, str]] = []  # every successful pod create, in order
        self.faults: list[Fault] = []
        # Requests that wait (a throttled or slow API server) until their gate opens: (verb, resource, ns);
        # "late" ones are carried out (and watched) at once, only the response waits.
        self.gates: dict[tuple[str, str, str | None], threading.Event] = {}
        self.late_gates: dict[tuple[str, str, str | None], threading.Event] = {}
        self.requests: Counter[tuple[str, str]] = Counter()  # (verb, resource) of every request served
        self.watch_lag = 0
        # Returns the API server's message for a pod the server-side dry run finds invalid (None: valid).
        self.dry_run_verdict: Callable[[dict], str | None] = lambda pod: None
        self.store: Store | None = None
        self._watch: list[tuple[int, str, str, dict]] = []
        self._cycle = 0
        self._rv = itertools.count(1)
        for i in range(nodes):
            self.add_node(f"node-{i}", cpu=node_cpu)
        self.add("namespaces", None, {"metadata": {"name": "default"}})

    # --- the world, as kubectl and the other controllers change it -------------------------------------
    def apply(self, obj: dict, namespace: str = "default") -> dict:
        """Create a Meson object as a user would (no faults: the test is not the operator)."""
        plural = PLURALS[obj["kind"]]
        ns = None if plural == "queues" else obj["metadata"].get("namespace", namespace)
        return self.add(plural, ns, obj)

    def add(self, plural: str, namespace: str | None, obj: dict) -> dict:
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            key = (namespace, meta["name"])
            if key in self.objects[plural]:
                raise api_error(409, f'{plural} "{meta["name"]}" already exists')
            if namespace is not None:
                meta["namespace"] = namespace
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=rfc3339(self.clock()))
            self._bump(meta)
            self.objects[plural][key] = obj
            self._emit(plural, "ADDED", obj)
            return obj

    def add_node(self, name: str, cpu: str = "32", memory: str = "128Gi", pods: int = 110) -> None:
        self.add("nodes", None, {
            "metadata": {"name": name},
            "spec": {},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods)},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        })  # fmt: skip

    def add_priority_class(self, name: str, value: int) -> None:
        self.add("priorityclasses", None, {"metadata": {"name": name}, "value": value})

    def delete_unseen(self, plural: str, name: str, namespace: str | None = None) -> None:
        """Delete an object whose watch event the operator does not get (its view stays stale)."""
        with self.lock:
            del self.objects[plural][(namespace, name)]

    def user_patch(self, plural: str, name: str, patch: dict, namespace: str | None = "default") -> dict:
        """``kubectl patch --type=merge`` by someone other than the operator."""
        return self._patch(plural, namespace, name, patch)

    def user_patch_status(
        self, plural: str, name: str, status: dict, namespace: str | None = "default"
    ) -> dict:
        """``kubectl patch --subresource=status --type=merge`` by someone other than the operator."""
        ns = None if plural == "queues" else namespace
        return self._patch(plural, ns, name, {"status": status}, status_only=True)

    def inject(self, verb: str, resource: str, status: int, message: str = "", **match: Any) -> Fault:
        fault = Fault(verb, resource, status, message or f"injected {status}", **match)
        with self.lock:
            self.faults.append(fault)
        return fault

    def slow(
        self, verb: str, resource: str, namespace: str | None = None, response_only: bool = False
    ) -> threading.Event:
        """Requests matching this wait until the returned gate is set (at most 30 s); ``response_only``:
        the request is carried out at once (its watch event too), only the client's answer waits."""
        gates = self.late_gates if response_only else self.gates
        gate = gates[(verb, resource, namespace)] = threading.Event()
        return gate

    def remove(self, fault: Fault) -> None:
        with self.lock:
            self.faults.remove(fault)

    # --- reading the world ------------------------------------------------------------------------------
    def get(self, plural: str, name: str, namespace: str | None = "default") -> dict:
        ns = None if plural in ("queues", "nodes", "priorityclasses", "namespaces") else namespace
        with self.lock:
            return copy.deepcopy(self.objects[plural][(ns, name)])

    def status(self, plural: str, name: str, namespace: str | None = "default") -> dict:
        return self.get(plural, name, namespace).get("status") or {}

    def pods(self, workflow: str | None = None, queue: str | None = None, live: bool = False) -> list[dict]:
        with self.lock:
            out = []
            for pod in self.objects["pods"].values():
                labels = pod["metadata"].get("labels") or {}
                if workflow is not None and labels.get(LABEL_WORKFLOW) != workflow:
                    continue
                if queue is not None and labels.get(LABEL_QUEUE) != queue:
                    continue
                if live and pod["status"]["phase"] in translate.TERMINAL:
                    continue
                out.append(copy.deepcopy(pod))
            return out

    def warnings(self) -> list[tuple[str, str]]:
        """(object name, reason) of every Warning Event recorded."""
        with self.lock:
            return [(e["involvedObject"]["name"], e["reason"]) for e in self.events if e["type"] == "Warning"]

    # --- kube-scheduler and kubelet ---------------------------------------------------------------------
    def run_pods(self) -> None:
        """Bind pending pods where they fit (oldest first) and end running pods whose duration is over."""
        now = self.clock()
        with self.lock:
            free = {
                name: {k: canonical(k, v) for k, v in node["status"]["allocatable"].items()}
                for (_, name), node in self.objects["nodes"].items()
            }
            pods = sorted(self.objects["pods"].values(), key=lambda p: int(p["metadata"]["resourceVersion"]))
            for pod in pods:
                node = pod["spec"].get("nodeName")
                if node and pod["status"]["phase"] not in translate.TERMINAL and node in free:
                    for k, v in translate.pod_request(pod["spec"]).items():
                        free[node][k] = free[node].get(k, 0) - v
            for pod in pods:
                if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                    continue
                request = translate.pod_request(pod["spec"])
                for name, room in sorted(free.items()):
                    if all(room.get(k, 0) >= v for k, v in request.items()):
                        for k, v in request.items():
                            room[k] -= v
                        pod["spec"]["nodeName"] = name
                        pod["status"] = {"phase": "Running", "startTime": rfc3339(now)}
                        self._bump(pod["metadata"])
                        self._emit("pods", "MODIFIED", pod)
                        break
            for pod in pods:
                status = pod["status"]
                if status["phase"] != "Running":
                    continue
                annotations = pod["metadata"].get("annotations") or {}
                if now < (parse_time(status["startTime"]) or now) + seconds(annotations.get(DURATION, "1s")):
                    continue
                code = int(annotations.get(EXIT_CODE, "0"))
                run = int((pod["metadata"].get("labels") or {}).get(LABEL_RUN, "1"))
                if run > int(annotations.get(FAIL_ATTEMPTS, run)):
                    code = 0
                terminated = {"exitCode": code, "startedAt": status["startTime"], "finishedAt": rfc3339(now)}
                status["phase"] = "Succeeded" if code == 0 else "Failed"
                status["containerStatuses"] = [{"name": "main", "state": {"terminated": terminated}}]
                self._bump(pod["metadata"])
                self._emit("pods", "MODIFIED", pod)

    # --- watch ------------------------------------------------------------------------------------------
    def connect(self, store: Store) -> None:
        """A new operator process: its watches start with a full listing (as ``handlers.prime``)."""
        with self.lock:
            self.store = store
            self._watch.clear()  # events the previous process had not seen are superseded by the listing
            for plural, feed in self.feeds.items():
                for obj in self.objects[plural].values():
                    getattr(store, feed)("ADDED", copy.deepcopy(obj))

    def deliver(self) -> None:
        """Feed the store the watch events that are due (call on the event loop's thread, once a cycle)."""
        with self.lock:
            self._cycle += 1
            due = [e for e in self._watch if e[0] < self._cycle]
            self._watch = [e for e in self._watch if e[0] >= self._cycle]
        if self.store is not None:
            for _, plural, kind, obj in due:
                getattr(self.store, self.feeds[plural])(kind, obj)

    def _emit(self, plural: str, kind: str, obj: dict) -> None:
        self._watch.append((self._cycle + self.watch_lag, plural, kind, copy.deepcopy(obj)))

    def _bump(self, meta: dict) -> None:
        meta["resourceVersion"] = str(next(self._rv))

    # --- the API server's side of the operator's calls --------------------------------------------------
    def serve(self, verb: str, resource: str, ns: str | None, name: str, body: Any, fn: Callable[[], T]) -> T:
        """Carry out one request, unless an injected fault says otherwise."""
        gate = self.gates.get((verb, resource, ns)) or self.gates.get((verb, resource, None))
        if gate is not None:
            gate.wait(timeout=30)
        fault = None
        with self.lock:
            self.requests[(verb, resource)] += 1
            for f in self.faults:
                if f.applies(verb, resource, ns, name, body if isinstance(body, dict) else {}):
                    fault = f
                    f.hits += 1
                    if f.times is not None:
                        f.times -= 1
                    break
        if fault is not None and not fault.lost_response:
            raise api_error(fault.status, fault.message)
        result = fn()
        late = self.late_gates.get((verb, resource, ns)) or self.late_gates.get((verb, resource, None))
        if late is not None:
            late.wait(timeout=30)
        if fault is not None:  # done, but the client never heard back
            raise api_error(fault.status, fault.message)
        return result

    def create_pod(self, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]

        def create() -> dict:
            with self.lock:
                pc = body["spec"].get("priorityClassName")
                if pc and (None, pc) not in self.objects["priorityclasses"]:
                    raise api_error(
                        403, f'pods "{name}" is forbidden: no PriorityClass with name {pc} was found'
                    )
                if (namespace, name) in self.objects["pods"]:
                    raise api_error(409, f'pods "{name}" already exists')
                pod = {**copy.deepcopy(body), "status": {"phase": "Pending"}}
                pod["metadata"].update(
                    namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=rfc3339(self.clock())
                )
                self._bump(pod["metadata"])
                self.objects["pods"][(namespace, name)] = pod
                self.created_pods.append((namespace, name))
                self._emit("pods", "ADDED", pod)
                return copy.deepcopy(pod)

        return self.serve("create", "pods", namespace, name, body, create)

    def create_object(self, plural: str, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]
        return self.serve(
            "create", plural, namespace, name, body, lambda: copy.deepcopy(self.add(plural, namespace, body))
        )

    def patch(self, plural: str, ns: str | None, name: str, body: dict, status_only: bool = False) -> dict:
        verb = "patch_status" if status_only else "patch"
        return self.serve(
            verb, plural, ns, name, body, lambda: self._patch(plural, ns, name, body, status_only)
        )

    def _patch(self, plural: str, ns: str | None, name: str, patch: dict, status_only: bool = False) -> dict:
        with self.lock:
            obj = self.objects[plural].get((ns, name))
            if obj is None:
                raise api_error(404, f'{plural} "{name}" not found')
            if status_only:  # the status subresource ignores everything but .status
                patch = {"status": patch.get("status")} if "status" in patch else {}
            obj = json_merge_patch(obj, patch)
            self._bump(obj["metadata"])
            self.objects[plural][(ns, name)] = obj
            self._emit(plural, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, plural: str, ns: str | None, name: str) -> dict:
        return self.serve("delete", plural, ns, name, None, lambda: self._delete(plural, ns, name))

    def _delete(self, plural: str, ns: str | None, name: str) -> dict:
        with self.lock:
            obj = self.objects[plural].pop((ns, name), None)
            if obj is None:
                raise api_error(404, f'{plural} "{name}" not found')
            self._bump(obj["metadata"])
            self._emit(plural, "DELETED", obj)
            uid = obj["metadata"]["uid"]
            for (pns, pname), pod in list(self.objects["pods"].items()):  # the garbage collector
                if any(r.get("uid") == uid for r in pod["metadata"].get("ownerReferences") or []):
                    self._delete("pods", pns, pname)
            return {"kind": "Status", "status": "Success"}

    def dry_run_pod(self, namespace: str, pod: dict) -> RawResponse:
        name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")

        def dry_run() -> RawResponse:
            pc = pod["spec"].get("priorityClassName")
            if pc and (None, pc) not in self.objects["priorityclasses"]:  # the Priority admission plugin
                raise api_error(403, f'pods "{name}" is forbidden: no PriorityClass with name {pc} was found')
            message = self.dry_run_verdict(pod)
            if message:
                raise api_error(422, f'Pod "{name}" is invalid: {message}')
            return RawResponse(json.dumps(pod).encode())

        return self.serve("dry_run", "pods", namespace, name, pod, dry_run)

    def record_event(self, namespace: str, body: dict) -> None:
        def record() -> None:
            with self.lock:
                self.events.append(copy.deepcopy(body))

        self.serve("create", "events", namespace, body["metadata"]["name"], body, record)

    # --- operator processes -----------------------------------------------------------------------------
    def session(self) -> Session:
        return Session(self)


class Session:
    """The API clients of one operator process; :meth:`kill` (or ``kill_after_pod_creates``) ends it."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.alive = True
        self.kill_after_pod_creates: int | None = None
        self._creates = 0
        # The API groups the loop uses; the others (listings, webhook registration) are not the loop's.
        groups = {"api": _Api(self), "core": _Core(self), "custom": _Custom(self)}
        self.clients = kube.Clients(**{f.name: groups.get(f.name) for f in dataclasses.fields(kube.Clients)})

    def kill(self) -> None:
        self.alive = False

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.alive:
            raise OperatorKilled("this operator process is dead")
        return fn(*args)

    def pod_created(self) -> None:
        with self.cluster.lock:
            self._creates += 1
            if self.kill_after_pod_creates is not None and self._creates >= self.kill_after_pod_creates:
                self.alive = False


class _Core:
    def __init__(self, s: Session) -> None:
        self.s, self.c = s, s.cluster

    def create_namespaced_pod(self, namespace: str, body: dict, _preload_content: bool = True, **_: Any):
        pod = self.s.call(self.c.create_pod, namespace, body)
        self.s.pod_created()
        return RawResponse(json.dumps(pod).encode()) if not _preload_content else pod

    def patch_namespaced_pod(self, name: str, namespace: str, body: dict, **_: Any) -> dict:
        return self.s.call(self.c.patch, "pods", namespace, name, body)

    def delete_namespaced_pod(self, name: str, namespace: str, **_: Any) -> dict:
        return self.s.call(self.c.delete, "pods", namespace, name)

    def create_namespaced_event(self, namespace: str, body: dict, **_: Any) -> RawResponse:
        self.s.call(self.c.record_event, namespace, body)
        return RawResponse(json.dumps(body).encode())


class _Custom:
    def __init__(self, s: Session) -> None:
        self.s, self.c = s, s.cluster

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **_: Any) -> dict:
        return self.s.call(self.c.create_object, plural, namespace, body)

    def patch_namespaced_custom_object_status(self, group, version, namespace, plural, name, body, **_):
        return self.s.call(functools.partial(self.c.patch, status_only=True), plural, namespace, name, body)

    def patch_cluster_custom_object_status(self, group, version, plural, name, body, **_: Any) -> dict:
        return self.s.call(functools.partial(self.c.patch, status_only=True), plural, None, name, body)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **_: Any) -> dict:
        return self.s.call(self.c.delete, plural, namespace, name)


class _Api:
    """The raw request path of ``meson.adapters.dryrun.pod_dry_run`` (only pod dry-run creates)."""

    def __init__(self, s: Session) -> None:
        self.s, self.c = s, s.cluster

    def param_serialize(self, method, resource_path, path_params=None, query_params=None,
                        header_params=None, body=None, **_: Any):  # fmt: skip
        assert method == "POST" and ("dryRun", "All") in (query_params or []), (method, query_params)
        return method, resource_path.format(**(path_params or {})), header_params, body, None

    def call_api(self, method, url, header_params=None, body=None, post_params=None, **_: Any) -> RawResponse:
        namespace = url.split("/")[4]  # /api/v1/namespaces/{namespace}/pods
        return self.s.call(self.c.dry_run_pod, namespace, body)


# --- the operator under test -------------------------------------------------------------------------------
class _TrackedPool(ThreadPoolExecutor):
    """A thread pool that knows when all it was given is done (a test waits for fire-and-forget work)."""

    def __init__(self, workers: int) -> None:
        super().__init__(max_workers=workers, thread_name_prefix="fake-meson")
        self.busy = 0
        self._busy_lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        with self._busy_lock:
            self.busy += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future) -> None:
        with self._busy_lock:
            self.busy -= 1


@dataclass
class Operator:
    """One operator process: a Store primed from the world and the real SchedulingLoop on fake clients."""

    cluster: FakeCluster
    session: Session = field(init=False)
    store: Store = field(init=False)
    loop: SchedulingLoop = field(init=False)
    cycles: int = 0
    # Every status written as soon as it changes, unless a test is about the interval (the default is 1 s).
    status_interval: float = 0.0

    def __post_init__(self) -> None:
        self.session = self.cluster.session()
        self.store = Store()
        self.cluster.connect(self.store)
        self.loop = SchedulingLoop(store=self.store, clients=self.session.clients, clock=self.cluster.clock)
        self.loop.verify_incremental = True  # every reused plan is checked against a plan from scratch
        self.loop.tuning = dataclasses.replace(self.loop.tuning, status_interval=self.status_interval)
        writer = self.loop.writer
        pools = (
            ("_pool", 16),
            ("_pods", 16),
            ("_events", 2),
            ("_checks", 16),
        )  # the same pools, but observable
        for name, workers in pools:
            getattr(writer, name).shutdown()
            setattr(writer, name, _TrackedPool(workers))

    async def cycle(self) -> CycleResult:
        """One cycle as ``SchedulingLoop.run`` makes it, after the watch events due; then wait for the work it
        started in the background (dry runs, events) and for its results to reach the view."""
        self.loop.writer.bind(asyncio.get_running_loop())
        self.cluster.deliver()
        result = await self.loop.cycle()
        await self.settle()
        if not self.session.alive:  # it died in one of the cycle's background writes
            raise OperatorKilled("this operator process is dead")
        assert not self.loop.mismatches, self.loop.mismatches
        self.cycles += 1
        return result

    async def settle(self) -> None:
        """Wait for the cycle's background writes (a test looks at the world after them)."""
        await self.loop.inflight.drain()
        w = self.loop.writer
        pools = (w._pool, w._pods, w._events, w._checks)
        while any(p.busy for p in pools):  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)
        for _ in range(3):  # callbacks handed to the event loop with call_soon_threadsafe
            await asyncio.sleep(0)

    async def crash(self) -> None:
        """The process dies: its calls stop reaching the API server, its memory is gone."""
        self.session.kill()
        await self.settle()
        self.loop.writer._pool.shutdown(wait=False)
        self.loop.writer._pods.shutdown(wait=False)
        self.loop.writer._events.shutdown(wait=False)
        self.loop.writer._checks.shutdown(wait=False)


async def run(
    cluster: FakeCluster,
    op: Operator,
    until: Callable[[], bool],
    *,
    max_cycles: int = 60,
    tick: float = 1.0,
    each: Callable[[], None] | None = None,
) -> int:
    """Cycle, run pods, advance the clock, until ``until()``; the number of cycles it took."""
    for n in range(1, max_cycles + 1):
        await op.cycle()
        if each is not None:
            each()
        cluster.run_pods()
        cluster.clock.advance(tick)
        if until():
            return n
    raise AssertionError(f"not done after {max_cycles} cycles")


def sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (pytest-asyncio is not installed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=60))

    return wrapper
