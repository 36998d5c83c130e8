"""The `make bench` scenarios on the embedded control plane: each run through Meson and as raw pods.

Every scenario function takes a :class:`Ctx` and returns a JSON-able dict; time series for the plots go
under the ``series`` key ({side: [[t, waiting, admitted, completed], ...]}).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import stats
from bench.kube import GROUP, VERSION, Api, Sample, View, paced, sampler
from bench.trace import (
    CAPACITY_M,
    LABEL_CLASS,
    LABEL_ITEM,
    LABEL_QUEUE,
    dag_levels,
    fan_steps,
    floor_seconds,
    instances,
    kueue_trace,
    pod_template,
    scaled,
)
from e2e.operator import OperatorProcess

WF = f"/apis/{GROUP}/{VERSION}"
PRIORITY_CLASSES = {"bench-p50": 50, "bench-p100": 100, "bench-p200": 200, "bench-low": 0, "bench-high": 1000}


@dataclass
class Ctx:
    kubeconfig: Path
    scale: float
    operator_args: tuple[str, ...] = ()
    operator_source: Path | None = None  # a snapshot of meson/ to run instead of the working tree
    profile_dir: Path | None = None
    log: Callable[[str], None] = print
    operator_logs: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- helpers


def _metric(text: str, name: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    )


def _calls(text: str) -> dict[str, float]:
    """meson_api_requests_total by client method."""
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^meson_api_requests_total\{call="([^"]*)"\} ([0-9.e+-]+)$', text, re.M)
    }


class OperatorCost:
    """The operator as a subprocess, with its CPU time and peak RSS sampled by psutil every 0.25 s."""

    def __init__(self, ctx: Ctx, name: str) -> None:
        self.profile = None
        prof = ""
        if ctx.profile_dir is not None:
            ctx.profile_dir.mkdir(parents=True, exist_ok=True)
            self.profile = ctx.profile_dir / f"{name}.prof"
            prof = (
                "import cProfile, atexit; _p = cProfile.Profile(); "
                f"atexit.register(_p.dump_stats, {str(self.profile)!r}); _p.enable(); "
            )
        src = f"sys.path.insert(0, {str(ctx.operator_source)!r}); " if ctx.operator_source else ""
        # `meson operator` from the chosen source: sys.argv[1:] are its arguments.
        launcher = (
            "-c",
            f"import sys, runpy; {src}{prof}sys.argv[0] = 'meson'; "
            "runpy.run_module('meson.cli', run_name='__main__')",
        )
        self.op = OperatorProcess(ctx.kubeconfig, extra_args=ctx.operator_args, launcher=launcher)
        self.ctx = ctx
        self.peak_rss = 0
        self._stop = threading.Event()
        self._cpu0 = 0.0
        self.cpu = 0.0
        self._m0 = ""

    def __enter__(self) -> OperatorCost:
        self.op.start()
        deadline = time.monotonic() + 120
        while "view primed" not in self.op.log() and time.monotonic() < deadline:
            time.sleep(0.2)  # the operator has listed the world: what is created next is new to it
        self.proc = psutil.Process(self.op.proc.pid)
        self._m0 = self.op.metrics()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
                t = self.proc.cpu_times()
                self.cpu = t.user + t.system
            self._stop.wait(0.25)

    def mark(self) -> tuple[float, str]:
        """(CPU seconds so far, metrics text) for a window measurement."""
        t = self.proc.cpu_times()
        return t.user + t.system, self.op.metrics()

    def result(self) -> dict[str, Any]:
        m = self.op.metrics()
        d = {
            n: _metric(m, n) - _metric(self._m0, n)
            for n in (
                "meson_scheduling_cycle_seconds_count",
                "meson_scheduling_cycle_seconds_sum",
                "meson_api_errors_total",
            )
        }
        t = self.proc.cpu_times()
        cycles = int(d["meson_scheduling_cycle_seconds_count"])
        calls = _calls(m)
        calls = {c: n - _calls(self._m0).get(c, 0) for c, n in calls.items()}
        return {
            "operator_cpu_s": round(t.user + t.system, 2),
            "operator_peak_rss_mb": round(self.peak_rss / 2**20, 1),
            "cycles": cycles,
            "mean_cycle_ms": round(1000 * d["meson_scheduling_cycle_seconds_sum"] / cycles, 2)
            if cycles
            else None,
            "operator_api_errors": int(d["meson_api_errors_total"]),
            "operator_api_calls": {c: int(n) for c, n in sorted(calls.items()) if n},
            "status_writes_superseded": int(
                _metric(m, "meson_status_writes_superseded_total")
                - _metric(self._m0, "meson_status_writes_superseded_total")
            ),
        }

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.op.stop()
        self.ctx.operator_logs.append(str(self.op.log_path))


async def setup(api: Api) -> None:
    """PriorityClasses (preemptionPolicy Never: kube-scheduler must not preempt; Meson preempts itself)."""
    for name, value in PRIORITY_CLASSES.items():
        await api.apply(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            name,
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "preemptionPolicy": "Never",
                "globalDefault": False,
            },
        )


async def queue(
    api: Api,
    name: str,
    *,
    parent: str | None = None,
    guaranteed: str | None = None,
    limit: str | None = None,
    **spec: Any,
) -> None:
    body_spec: dict[str, Any] = dict(spec)
    if parent:
        body_spec["parent"] = parent
    if guaranteed is not None:
        body_spec["quota"] = {"cpu": {"guaranteed": guaranteed, **({"limit": limit} if limit else {})}}
    await api.apply(
        f"{WF}/queues",
        name,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Queue", "metadata": {"name": name}, "spec": body_spec},
    )


async def namespace(api: Api, prefix: str) -> str:
    ns = f"{prefix}-{int(time.time())}"
    await api.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    return ns


async def drop_namespace(api: Api, ns: str, log: Callable[[str], None], timeout: float = 600) -> None:
    """Delete a namespace and wait until it is gone, so the next scenario starts on an idle cluster."""
    t0 = time.monotonic()
    await api.request("DELETE", f"/api/v1/namespaces/{ns}")
    while time.monotonic() - t0 < timeout:
        status, _ = await api.request("GET", f"/api/v1/namespaces/{ns}")
        if status == 404:
            log(f"  namespace {ns} deleted in {time.monotonic() - t0:.0f}s")
            return
        await asyncio.sleep(2)
    log(f"  namespace {ns} still terminating after {timeout:.0f}s; going on")


def _pod(name: str, template: dict, priority_class: str | None) -> dict:
    spec = {**template["spec"], "restartPolicy": "Never"}
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **template["metadata"]},
        "spec": spec,
    }


def _workflow(name: str, queue_name: str, steps: list[dict], priority_class: str | None = None) -> dict:
    spec: dict[str, Any] = {"queue": queue_name, "steps": steps}
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": {LABEL_RUN: RUN_ID}},
        "spec": spec,
    }


RUN_ID = str(int(time.time()))
LABEL_RUN = "bench.meson.dev/run"


def _labels(item: str, queue_name: str, cls: str) -> dict[str, str]:
    return {LABEL_ITEM: item, LABEL_QUEUE: queue_name, LABEL_CLASS: cls, LABEL_RUN: RUN_ID}


def _series(samples: list[Sample]) -> list[list[float]]:
    return [[round(s.t, 2), s.waiting, s.admitted, s.completed] for s in samples]


class Watched:
    """Pod (and workflow) watches plus the sampler for one side of a scenario."""

    def __init__(self, api: Api, ns: str | None, workflows: bool) -> None:
        """``ns=None``: every namespace (the bench's own objects, by their run label)."""
        self.api, self.ns, self.workflows = api, ns, workflows
        self.view = View()
        self.samples: list[Sample] = []
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Watched:
        scope = f"/namespaces/{self.ns}" if self.ns else ""
        selector = {"labelSelector": f"{LABEL_RUN}={RUN_ID}"}
        self.tasks = [
            asyncio.create_task(
                self.api.watch(f"/api/v1{scope}/pods", self.view.on_pod, self.stop, selector)
            ),
            asyncio.create_task(sampler(self.view, self.stop, self.samples)),
        ]
        if self.workflows:
            self.tasks.append(
                asyncio.create_task(
                    self.api.watch(f"{WF}{scope}/workflows", self.view.on_workflow, self.stop, selector)
                )
            )
        await asyncio.sleep(0.5)  # the LISTs are done and the watches open before anything is created
        self.view.t0 = time.monotonic()
        return self

    async def wait(self, done: Callable[[View], bool], timeout: float) -> bool:
        t0 = time.monotonic()
        while not done(self.view):
            for t in self.tasks:
                if t.done() and t.exception():
                    raise t.exception()  # type: ignore[misc]
            if time.monotonic() - t0 > timeout:
                return False
            await asyncio.sleep(0.2)
        return True

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# ----------------------------------------------------------------------------------- Kueue's baseline

PRIORITY_OF = {50: "bench-p50", 100: "bench-p100", 200: "bench-p200"}


async def kueue_side(api: Api, ctx: Ctx, side: str) -> dict[str, Any]:
    queues, arrivals = kueue_trace(ctx.scale)
    nominal = {q.name: q.guaranteed_m for q in queues if q.parent}
    limits = {q.name: q.limit_m for q in queues if q.parent}
    cohorts = {q.name for q in queues if not q.parent}
    pool = {c: sum(q.guaranteed_m for q in queues if q.parent == c) for c in cohorts}
    parent = {q.name: q.parent for q in queues if q.parent}
    if side == "meson":
        for q in queues:
            if q.parent is None:
                await queue(api, q.name)
            else:
                await queue(
                    api,
                    q.name,
                    parent=q.parent,
                    guaranteed=f"{q.guaranteed_m}m",
                    limit=f"{q.limit_m}m",
                    queueingStrategy="BestEffortFIFO",
                    preemption={"withinQueue": "LowerPriority", "reclaimBorrowed": True},
                )
    # One namespace per ClusterQueue, as Kueue's generator makes (and Meson writes per namespace).
    stamp = int(time.time())
    nss = {q: f"bk-{side}-{q}-{stamp}" for q in nominal}
    for ns in nss.values():
        await api.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    n = len(arrivals)
    timeout = max(600.0, 12 * floor_seconds(arrivals, CAPACITY_M))

    def make(a) -> Callable[[], Any]:
        tpl = pod_template(cpu_m=a.cpu_m, runtime=a.runtime, labels=_labels(a.name, a.queue, a.cls))
        pc = PRIORITY_OF[a.priority]
        ns = nss[a.queue]
        if side == "raw":
            path, body = f"/api/v1/namespaces/{ns}/pods", _pod(a.name, tpl, pc)
        else:
            path, body = (
                f"{WF}/namespaces/{ns}/workflows",
                _workflow(a.name, a.queue, [{"name": "main", "template": tpl}], pc),
            )

        async def fn() -> None:
            w.view.submitted[a.name] = w.view.now()
            await api.create(path, body)

        return fn

    cost_ctx = OperatorCost(ctx, "kueue") if side == "meson" else contextlib.nullcontext()
    with cost_ctx as cost:
        async with Watched(api, None, workflows=False) as w:
            ctx.log(f"  {side}: {n} workloads over {arrivals[-1].at:.0f}s")
            lateness = await paced([(a.at, make(a)) for a in arrivals], w.view, concurrency=48)
            ok = await w.wait(lambda v: len(v.done) >= n, timeout)
        view = w.view
        result: dict[str, Any] = cost.result() if cost else {}
    # Quota violations by sampling: every leaf within its limit, every cohort within its pool.
    bad = 0
    worst: list[tuple[str, int, int]] = []
    for s in w.samples:
        coh: dict[str, int] = {}
        for q, u in s.usage.items():
            if q in parent:
                coh[parent[q]] = coh.get(parent[q], 0) + u
        v = stats.violations(s.usage, limits) + stats.violations(coh, pool)
        if v:
            bad += 1
            worst = worst or v
    wall = max(view.done.values(), default=None) if ok else None
    cls_of = {a.name: a.cls for a in arrivals}
    tta = stats.by_class(
        (cls_of[i], view.last_pod[i] - view.submitted[i]) for i in view.last_pod if i in view.submitted
    )
    ttb = stats.by_class(
        (cls_of[i], view.bound[i] - view.submitted[i]) for i in view.bound if i in view.submitted
    )
    end = wall or view.now()
    usage = stats.usage_fraction(
        # Meson: a pod holds quota from its creation (admission); raw: only once bound to a node.
        (
            stats.Interval(r.queue, r.added if side == "meson" else r.bound, r.ended, r.cpu_m)
            for r in view.pods.values()
            if side == "meson" or r.bound is not None
        ),
        nominal,
        0.0,
        end,
    )
    result.update(
        {
            "workloads": n,
            "completed": len(view.done),
            "all_completed": ok,
            "wall_s": wall,
            "floor_s": floor_seconds(arrivals, CAPACITY_M),
            "create_lateness_s": round(lateness, 2),
            "time_to_admission_s": tta if side == "meson" else ttb,
            "time_to_bound_s": ttb,
            "min_queue_usage_pct": round(100 * min(usage.values()), 1),
            "samples": len(w.samples),
            "quota_violation_samples": bad if side == "meson" else None,
            "first_violation": worst if side == "meson" else None,
            "pods_ended_early": view.preempted,
            "pods": len(view.pods),
            "client_errors": dict(api.errors),
            "series": _series(w.samples),
        }
    )
    api.errors.clear()
    await asyncio.gather(*(drop_namespace(api, ns, ctx.log) for ns in nss.values()))
    return result


# ------------------------------------------------------------------------------------ workflow throughput

WF_CPU_M, WF_RUNTIME = 100, 1.0
WF_TIMEOUT = 480.0  # a side that has not finished by then is reported with what it completed


async def workflows_side(api: Api, ctx: Ctx, side: str, shape: str) -> dict[str, Any]:
    """shape "single": N single-step workflows at once; "dag": M fan-out/fan-in workflows of 25 steps."""
    if shape == "single":
        count = scaled(5000, ctx.scale)
        steps = [{"name": "main", "template": pod_template(cpu_m=WF_CPU_M, runtime=WF_RUNTIME)}]
    else:
        count, steps = scaled(200, ctx.scale), fan_steps(23, WF_RUNTIME, WF_CPU_M)
    levels = dag_levels(steps)
    by_step = {s["name"]: s for s in steps}
    pods_of = {name: instances(by_step[name]) for name in by_step}
    total_pods = count * sum(len(v) for v in pods_of.values())
    if side == "meson":
        await queue(api, "bench-wf", guaranteed="100000")
    ns = await namespace(api, f"bench-wf-{shape}-{side}")
    names = [f"{shape}-{i}" for i in range(count)]

    def labelled(wf: str, step: str, pod: str | None = None) -> dict:
        """The step's template labelled with its item (for a foreach under Meson: the step's)."""
        tpl = by_step[step]["template"]
        item = f"{wf}.{pod or step}"
        return {**tpl, "metadata": {**tpl["metadata"], "labels": _labels(item, "bench-wf", shape)}}

    cost_ctx = OperatorCost(ctx, f"workflows-{shape}") if side == "meson" else contextlib.nullcontext()
    with cost_ctx as cost:
        async with Watched(api, ns, workflows=side == "meson") as w:
            if side == "meson":
                # Meson names its own pods; the item label says which workflow step a pod runs.
                bodies = [
                    _workflow(wf, "bench-wf", [{**s, "template": labelled(wf, s["name"])} for s in steps])
                    for wf in names
                ]

                def post(body: dict) -> Callable[[], Any]:
                    async def fn() -> None:
                        w.view.submitted[body["metadata"]["name"]] = w.view.now()
                        await api.create(f"{WF}/namespaces/{ns}/workflows", body)

                    return fn

                await paced([(0.0, post(b)) for b in bodies], w.view, concurrency=32)
                ok = await w.wait(lambda v: len(v.wf_done) >= count, WF_TIMEOUT)
                wall = max(w.view.wf_done.values(), default=None) if ok else None
            else:
                # A raw client sequences the DAG itself: it creates a level's pods when the previous
                # level of that workflow has succeeded.
                remaining: dict[tuple[str, int], int] = {}
                creates: set[asyncio.Task] = set()

                def level_pods(wf: str, k: int) -> list[dict]:
                    return [
                        _pod(f"{wf}-{pod}", labelled(wf, step, pod), None)
                        for step in levels[k]
                        for pod in pods_of[step]
                    ]

                def create_level(wf: str, k: int) -> None:
                    bodies = level_pods(wf, k)
                    remaining[(wf, k)] = len(bodies)
                    for body in bodies:
                        creates.add(asyncio.ensure_future(api.create(f"/api/v1/namespaces/{ns}/pods", body)))

                level_of = {s: k for k, lv in enumerate(levels) for s in lv}
                finished: dict[str, float] = {}

                def hook(kind: str, rec, pod: dict) -> None:
                    if rec.phase != "Succeeded" or rec.item in seen:
                        return
                    seen.add(rec.item)
                    wf, pod_name = rec.item.split(".", 1)
                    k = level_of[pod_name.split("-")[0]]
                    remaining[(wf, k)] -= 1
                    if remaining[(wf, k)] == 0:
                        if k + 1 < len(levels):
                            create_level(wf, k + 1)
                        else:
                            finished[wf] = w.view.now()

                seen: set[str] = set()
                w.view.hooks.append(hook)
                sem = asyncio.Semaphore(32)

                async def first(wf: str) -> None:
                    async with sem:
                        w.view.submitted[wf] = w.view.now()
                        bodies = level_pods(wf, 0)
                        remaining[(wf, 0)] = len(bodies)
                        for body in bodies:
                            await api.create(f"/api/v1/namespaces/{ns}/pods", body)

                await asyncio.gather(*(first(wf) for wf in names))
                ok = await w.wait(lambda v: len(finished) >= count, WF_TIMEOUT)
                await asyncio.gather(*creates, return_exceptions=True)
                wall = max(finished.values(), default=None) if ok else None
        view = w.view
        result: dict[str, Any] = cost.result() if cost else {}
    result.update(
        {
            "workflows": count,
            "steps_per_workflow": total_pods // count,
            "pods": total_pods,
            "all_completed": ok,
            "wall_s": wall,
            "workflows_per_min": stats.rate_per(count, wall, 60.0),
            "steps_per_s": stats.rate_per(total_pods, wall),
            "pods_succeeded": sum(1 for r in view.pods.values() if r.phase == "Succeeded"),
            "client_errors": dict(api.errors),
            "series": _series(w.samples),
        }
    )
    api.errors.clear()
    await drop_namespace(api, ns, ctx.log)
    return result


# ------------------------------------------------------------------------------------------------ cost


async def cost_scenario(api: Api, ctx: Ctx) -> dict[str, Any]:
    """10,000 Workflow objects present: 20% running (pods kept running), 40% finished, 40% pending (a
    queue on Hold). Operator CPU and peak RSS while they are created and settle, then over an idle minute."""
    total = scaled(10000, ctx.scale)
    running, finished = total // 5, (total * 2) // 5
    pending = total - running - finished
    await queue(api, "cost-run", guaranteed="100000")
    await queue(api, "cost-held", guaranteed="100000", stopPolicy="Hold")
    ns = await namespace(api, "bench-cost")
    bodies = []
    for i in range(total):
        if i < running:
            q, tpl = (
                "cost-run",
                pod_template(cpu_m=10, runtime=None, labels=_labels(f"r{i}", "cost-run", "running")),
            )
        elif i < running + finished:
            q, tpl = (
                "cost-run",
                pod_template(cpu_m=10, runtime=0.1, labels=_labels(f"f{i}", "cost-run", "finished")),
            )
        else:
            q, tpl = (
                "cost-held",
                pod_template(cpu_m=10, runtime=0.1, labels=_labels(f"p{i}", "cost-held", "pending")),
            )
        bodies.append(_workflow(f"wf-{i}", q, [{"name": "main", "template": tpl}]))
    with OperatorCost(ctx, "cost") as cost:
        async with Watched(api, ns, workflows=True) as w:

            def post(body: dict) -> Callable[[], Any]:
                async def fn() -> None:
                    await api.create(f"{WF}/namespaces/{ns}/workflows", body)

                return fn

            await paced([(0.0, post(b)) for b in bodies], w.view, concurrency=32)
            created = w.view.now()
            ctx.log(f"  cost: {total} workflows created in {created:.0f}s")

            def settled(v: View) -> bool:
                bound = sum(1 for r in v.pods.values() if r.cls == "running" and r.bound is not None)
                return (
                    bound >= running and sum(1 for p in v.wf_phase.values() if p == "Succeeded") >= finished
                )

            ok = await w.wait(settled, 480.0)
            settle = w.view.now()
            ctx.log(f"  cost: {'settled' if ok else 'not settled'} after {settle:.0f}s; an idle minute")
            cpu0, m0 = cost.mark()
            idle = 60.0
            await asyncio.sleep(idle)
            cpu1, m1 = cost.mark()
        result = cost.result()
    cycles = _metric(m1, "meson_scheduling_cycle_seconds_count") - _metric(
        m0, "meson_scheduling_cycle_seconds_count"
    )
    phases: dict[str, int] = {}
    for p in w.view.wf_phase.values():
        phases[p or "(none)"] = phases.get(p or "(none)", 0) + 1
    result.update(
        {
            "workflow_objects": total,
            "running": running,
            "finished": finished,
            "pending": pending,
            "created_s": round(created, 1),
            "settled": ok,
            "settled_s": round(settle, 1),
            "phases": phases,
            "idle_window_s": idle,
            "idle_cpu_s": round(cpu1 - cpu0, 2),
            "idle_cycles": int(cycles),
            "idle_cpu_ms_per_cycle": round(1000 * (cpu1 - cpu0) / cycles, 2) if cycles else None,
            "series": _series(w.samples),
        }
    )
    await drop_namespace(api, ns, ctx.log)
    return result


# ---------------------------------------------------------------------------------------------- latency


async def latency_side(api: Api, ctx: Ctx, side: str) -> dict[str, Any]:
    """With 10,000 low-priority steps pending, create a high-priority workflow (or pod) and time it to bound.

    Meson: one low-priority Workflow fans out over 10,000 + 50 items in queue lat-low (5 cores: 50 run, the
    rest wait); the high-priority workflows go to its sibling queue lat-high, which has room. Raw: 10,000
    low-priority pods that no node can hold sit in kube-scheduler's queue; the high-priority pod fits.
    """
    pending, running, tries = scaled(10000, ctx.scale), 50, 20
    ns = await namespace(api, f"bench-lat-{side}")
    if side == "meson":
        await queue(api, "lat")
        await queue(api, "lat-low", parent="lat", guaranteed="5", limit="5")
        await queue(api, "lat-high", parent="lat", guaranteed="5", limit="5")
    cost_ctx = OperatorCost(ctx, "latency") if side == "meson" else contextlib.nullcontext()
    lat: list[float] = []
    with cost_ctx as cost:
        async with Watched(api, ns, workflows=False) as w:
            if side == "meson":
                # A foreach takes at most 10,000 items: as many low-priority workflows as that needs.
                tpl = pod_template(cpu_m=100, runtime=None, labels=_labels("low", "lat-low", "low"))
                total, chunk = pending + running, 10000
                for i in range(0, total, chunk):
                    items = list(range(i, min(total, i + chunk)))
                    steps = [{"name": "fan", "foreach": {"items": items}, "template": tpl}]
                    low = _workflow(f"low-{i // chunk}", "lat-low", steps, "bench-low")
                    await api.create(f"{WF}/namespaces/{ns}/workflows", low)
                await w.wait(lambda v: sum(1 for r in v.pods.values() if r.bound is not None) >= running, 600)
            else:

                def post(i: int) -> Callable[[], Any]:
                    body = _pod(
                        f"low-{i}",
                        pod_template(cpu_m=1000 * 1000, runtime=None, labels=_labels(f"low-{i}", "", "low")),
                        "bench-low",
                    )

                    async def fn() -> None:
                        await api.create(f"/api/v1/namespaces/{ns}/pods", body)

                    return fn

                await paced([(0.0, post(i)) for i in range(pending)], w.view, concurrency=32)
            ctx.log(f"  {side}: {pending} low-priority pending after {w.view.now():.0f}s; {tries} tries")
            await asyncio.sleep(5)
            for k in range(tries):
                item = f"high-{k}"
                tpl = pod_template(cpu_m=100, runtime=0.1, labels=_labels(item, "lat-high", "high"))
                t = w.view.now()
                if side == "meson":
                    await api.create(
                        f"{WF}/namespaces/{ns}/workflows",
                        _workflow(item, "lat-high", [{"name": "main", "template": tpl}], "bench-high"),
                    )
                else:
                    await api.create(f"/api/v1/namespaces/{ns}/pods", _pod(item, tpl, "bench-high"))
                if await w.wait(lambda v, i=item: i in v.bound, 60):
                    lat.append(w.view.bound[item] - t)
                await asyncio.sleep(1.0)
        result: dict[str, Any] = cost.result() if cost else {}
    result.update(
        {
            "pending": pending,
            "tries": tries,
            "bound": len(lat),
            "p50_s": stats.percentile(lat, 50),
            "p99_s": stats.percentile(lat, 99),
            "max_s": max(lat, default=None),
            "latencies_s": [round(x, 3) for x in lat],
        }
    )
    await drop_namespace(api, ns, ctx.log)
    return result
