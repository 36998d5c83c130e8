"""A small asyncio client for `make bench`: timed creates and a watch-fed view of pods and workflows.

The bench drives thousands of creates per minute from one Python process sharing 2 cores with the
control plane and the operator, so it speaks raw JSON over one aiohttp session (no typed client) and keeps
per-object only the few timestamps it needs, taken on this process's monotonic clock when the watch event
arrives. Events of one resource type come in resourceVersion order, so the view never sees a pod admitted
after a pod it replaced before that pod's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

GROUP, VERSION = "meson.dev", "v1alpha1"
TERMINAL = ("Succeeded", "Failed")


class Api:
    """JSON over HTTPS with the kubeconfig's bearer token (the embedded control plane's admin user)."""

    def __init__(self, kubeconfig: Path, connections: int = 48) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        self.ssl = ssl.create_default_context(cafile=cluster.get("certificate-authority"))
        if user.get("client-certificate"):
            self.ssl.load_cert_chain(user["client-certificate"], user.get("client-key"))
        self.headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        self.connections = connections
        self.session: aiohttp.ClientSession | None = None
        self.errors: dict[int, int] = {}

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=self.connections),
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def request(
        self, method: str, path: str, body: Any = None, params: dict | None = None, retries: int = 8
    ) -> tuple[int, Any]:
        """One call; 429/5xx and connection errors are retried with a short backoff."""
        assert self.session is not None
        delay = 0.1
        for attempt in range(retries + 1):
            try:
                async with self.session.request(
                    method,
                    self.server + path,
                    json=body,
                    params=params,
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as resp:
                    data = await resp.read()
                    if resp.status in (429, 500, 502, 503, 504) and attempt < retries:
                        self.errors[resp.status] = self.errors.get(resp.status, 0) + 1
                        await asyncio.sleep(delay)
                        delay = min(2.0, delay * 2)
                        continue
                    if resp.status >= 400:
                        self.errors[resp.status] = self.errors.get(resp.status, 0) + 1
                    return resp.status, (json.loads(data) if data else None)
            except (TimeoutError, aiohttp.ClientError):
                if attempt == retries:
                    raise
                self.errors[0] = self.errors.get(0, 0) + 1
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        raise AssertionError("unreachable")

    async def create(self, path: str, body: dict) -> int:
        status, data = await self.request("POST", path, body)
        if status >= 400 and status != 409:
            raise RuntimeError(f"POST {path} -> {status}: {json.dumps(data)[:500]}")
        return status

    async def apply(self, path: str, name: str, body: dict) -> None:
        """Create, or replace an existing object (keeping its resourceVersion)."""
        status, _ = await self.request("POST", path, body)
        if status == 409:
            _, cur = await self.request("GET", f"{path}/{name}")
            body = {
                **body,
                "metadata": {**body["metadata"], "resourceVersion": cur["metadata"]["resourceVersion"]},
            }
            status, data = await self.request("PUT", f"{path}/{name}", body)
            if status >= 400:
                raise RuntimeError(f"PUT {path}/{name} -> {status}: {data}")

    async def watch(
        self,
        path: str,
        on_event: Callable[[str, dict], None],
        stop: asyncio.Event,
        params: dict | None = None,
    ) -> None:
        """LIST then WATCH ``path`` until ``stop``; re-watches from the last resourceVersion on a break."""
        assert self.session is not None
        _, data = await self.request("GET", path, params={**(params or {}), "resourceVersion": "0"})
        for item in data["items"]:
            on_event("ADDED", item)
        rv = data["metadata"]["resourceVersion"]
        while not stop.is_set():
            q = {
                **(params or {}),
                "watch": "1",
                "resourceVersion": rv,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "1800",
            }
            try:
                async with self.session.get(
                    self.server + path, params=q, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
                ) as resp:
                    if resp.status == 410:
                        raise RuntimeError(f"watch {path}: resourceVersion {rv} expired")
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        obj = ev["object"]
                        if ev["type"] == "ERROR":
                            raise RuntimeError(f"watch {path}: {obj}")
                        rv = obj["metadata"]["resourceVersion"]
                        if ev["type"] != "BOOKMARK":
                            on_event(ev["type"], obj)
                        if stop.is_set():
                            return
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                continue


def cpu_m(pod: dict) -> int:
    total = 0
    for c in pod["spec"].get("containers", []):
        req = ((c.get("resources") or {}).get("requests") or {}).get("cpu", "0")
        total += quantity_m(req)
    return total


def quantity_m(q: str) -> int:
    """A CPU quantity in millicores ("500m", "2", "1k")."""
    scale = {"m": 1, "k": 10**6, "M": 10**9}
    if q and q[-1] in scale:
        return int(float(q[:-1]) * scale[q[-1]])
    return int(float(q) * 1000)


@dataclass
class PodRecord:
    item: str  # the bench item (workload) the pod belongs to
    queue: str
    cls: str
    cpu_m: int
    added: float
    bound: float | None = None
    ended: float | None = None  # terminal phase, deletion requested, or gone
    phase: str = "Pending"


@dataclass
class View:
    """What the watches saw, on the bench's clock (seconds since ``t0``)."""

    t0: float = field(default_factory=time.monotonic)
    pods: dict[str, PodRecord] = field(default_factory=dict)
    submitted: dict[str, float] = field(default_factory=dict)  # item -> time its create was sent
    first_pod: dict[str, float] = field(default_factory=dict)  # item -> first pod added
    last_pod: dict[str, float] = field(default_factory=dict)  # item -> last pod added (after preemptions)
    bound: dict[str, float] = field(default_factory=dict)  # item -> last pod bound
    done: dict[str, float] = field(default_factory=dict)  # item -> a pod of it Succeeded
    wf_phase: dict[str, str] = field(default_factory=dict)
    wf_done: dict[str, float] = field(default_factory=dict)  # workflow -> Succeeded/Failed seen
    live: dict[str, int] = field(default_factory=dict)  # queue -> cpu of pods holding quota
    live_pods: int = 0
    preempted: int = 0
    hooks: list[Callable[[str, PodRecord, dict], None]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _release(self, rec: PodRecord, t: float) -> None:
        if rec.ended is None:
            rec.ended = t
            self.live[rec.queue] = self.live.get(rec.queue, 0) - rec.cpu_m
            self.live_pods -= 1

    def on_pod(self, kind: str, pod: dict) -> None:
        t = self.now()
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        item = labels.get("bench.meson.dev/item")
        if item is None:
            return
        name = meta["name"]
        rec = self.pods.get(name)
        if rec is None:
            if kind == "DELETED":
                return
            rec = PodRecord(
                item,
                labels.get("bench.meson.dev/queue", ""),
                labels.get("bench.meson.dev/class", ""),
                cpu_m(pod),
                t,
            )
            self.pods[name] = rec
            self.first_pod.setdefault(item, t)
            self.last_pod[item] = t
            self.live[rec.queue] = self.live.get(rec.queue, 0) + rec.cpu_m
            self.live_pods += 1
        if rec.bound is None and pod["spec"].get("nodeName"):
            rec.bound = t
            self.bound[item] = t
        phase = (pod.get("status") or {}).get("phase", "Pending")
        rec.phase = phase
        if phase in TERMINAL:
            if phase == "Succeeded":
                self.done.setdefault(item, t)
            self._release(rec, t)
        elif meta.get("deletionTimestamp") or kind == "DELETED":
            if rec.ended is None:
                self.preempted += 1
            self._release(rec, t)
        for hook in self.hooks:
            hook(kind, rec, pod)

    def on_workflow(self, kind: str, wf: dict) -> None:
        name = wf["metadata"]["name"]
        phase = (wf.get("status") or {}).get("phase") or ""
        self.wf_phase[name] = phase
        if phase in TERMINAL and name not in self.wf_done:
            self.wf_done[name] = self.now()


@dataclass
class Sample:
    t: float
    waiting: int  # submitted, no pod bound yet
    admitted: int  # pods holding quota (created, not ended)
    completed: int  # items with a Succeeded pod
    usage: dict[str, int]


async def sampler(view: View, stop: asyncio.Event, out: list[Sample], interval: float = 0.5) -> None:
    while not stop.is_set():
        out.append(
            Sample(
                view.now(),
                len(view.submitted) - len(view.bound),
                view.live_pods,
                len(view.done),
                dict(view.live),
            )
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def paced(items: list[tuple[float, Callable[[], Any]]], view: View, concurrency: int = 32) -> float:
    """Run each coroutine factory at its offset (seconds after ``view.t0``); returns the worst lateness."""
    sem = asyncio.Semaphore(concurrency)
    tasks = []
    worst = 0.0

    async def one(fn: Callable[[], Any]) -> None:
        async with sem:
            await fn()

    for at, fn in items:
        delay = at - view.now()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            worst = max(worst, -delay)
        tasks.append(asyncio.create_task(one(fn)))
    await asyncio.gather(*tasks)
    return worst
