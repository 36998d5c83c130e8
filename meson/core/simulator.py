"""A discrete-event simulator that drives the scheduler in virtual time.

It plays the operator's part: workloads arrive from a trace, the scheduler runs a cycle whenever
something happens (an arrival, an exit, an eviction taking effect, or the ``wake_at`` it asked
for), admitted workloads run for their duration and then free their capacity, and preempted ones
are evicted after ``eviction_delay`` and go back to pending (restarting from scratch when admitted
again, as a Kubernetes job would).

With ``nodes`` it also plays kube-scheduler, crudely: admitted pods are placed first fit; pods that
do not fit wait in FIFO order for room, and a workload's clock starts once all its pods are placed.

Used by the tests (starvation, invariants over long runs) and by ``bench.core``. Time is virtual;
the only real-time measurement is the CPU spent inside ``Scheduler.cycle``.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meson.core.model import AdmittedWorkload, Decisions, NodeCapacity, QueueConfig, Snapshot, Workload
from meson.core.resources import PODS, Resources
from meson.core.scheduler import Scheduler


@dataclass(frozen=True, slots=True)
class TraceItem:
    """One arrival: the workload (``created`` is its arrival time) and how long it runs."""

    workload: Workload
    duration: float
    cls: str = ""


@dataclass(slots=True)
class WorkloadRecord:
    key: str
    queue: str
    cls: str
    arrival: float
    first_admitted: float | None = None
    last_admitted: float | None = None
    finished: float | None = None
    evictions: int = 0


@dataclass(slots=True)
class CycleStat:
    now: float
    cpu_ns: int
    admitted: int
    preempted: int
    pending: int


@dataclass(slots=True)
class SimResult:
    records: dict[str, WorkloadRecord]
    cycles: list[CycleStat]
    makespan: float
    # queue -> integral over time of its own (leaf) usage, per resource, in unit-seconds.
    usage_integral: dict[str, dict[str, float]]
    preemptions: list[tuple[float, str | None, str]]  # (time, preemptor, victim)
    unfinished: list[str] = field(default_factory=list)


_ARRIVE, _EVICT, _FINISH, _WAKE = range(4)  # order of processing at equal times


class Simulator:
    def __init__(
        self,
        queues: Sequence[QueueConfig],
        trace: Sequence[TraceItem],
        *,
        scheduler: Scheduler | None = None,
        nodes: Sequence[NodeCapacity] | None = None,
        global_rate: float | None = None,
        global_burst: int = 1,
        eviction_delay: float = 0.0,
        on_cycle: Callable[[Snapshot, Decisions], None] | None = None,
    ) -> None:
        self.queues = tuple(queues)
        self.trace = sorted(trace, key=lambda t: (t.workload.created, t.workload.key))
        self.scheduler = scheduler or Scheduler()
        self.nodes = None if nodes is None else sorted(nodes, key=lambda n: n.name)
        self.global_rate = global_rate
        self.global_burst = global_burst
        self.eviction_delay = eviction_delay
        self.on_cycle = on_cycle

    def run(self, until: float = math.inf, max_cycles: int = 10_000_000) -> SimResult:
        items = {t.workload.key: t for t in self.trace}
        records = {
            k: WorkloadRecord(k, t.workload.queue, t.cls, t.workload.created) for k, t in items.items()
        }
        events: list[tuple[float, int, int, str, int]] = []
        seq = 0
        for t in self.trace:
            events.append((t.workload.created, _ARRIVE, seq, t.workload.key, 0))
            seq += 1
        heapq.heapify(events)

        pending: dict[str, Workload] = {}
        running: dict[str, AdmittedWorkload] = {}
        evicting: set[str] = set()
        wakes: set[float] = set()
        cycles: list[CycleStat] = []
        preemptions: list[tuple[float, str | None, str]] = []
        usage_rate: dict[str, dict[str, int]] = {q.name: {} for q in self.queues}
        integral: dict[str, dict[str, float]] = {q.name: {} for q in self.queues}
        last_t = 0.0
        makespan = 0.0

        # Pods run in batches: a batch is the pods placed together, and they finish together. A
        # workload is done when all its pods are. Gangs start as one batch; other workloads' pods
        # start as room frees (kube-scheduler's queue, oldest first).
        node_used: list[dict[str, int]] = [{} for _ in self.nodes or ()]
        batches: dict[int, tuple[str, int, list[int]]] = {}  # id -> (key, pods, node per pod)
        live: dict[str, set[int]] = {}  # key -> its running batch ids
        remaining: dict[str, int] = {}  # key -> pods not finished yet
        unplaced: list[list] = []  # [key, pods], FIFO
        next_batch = 0

        def node_snapshot() -> list[NodeCapacity] | None:
            if self.nodes is None:
                return None
            return [
                NodeCapacity(n.name, n.allocatable, n.allocatable - used)
                for n, used in zip(self.nodes, node_used, strict=True)
            ]

        # Pod slots count only if the nodes report them (as in ``capacity``).
        count_pods = any(PODS in n.allocatable for n in self.nodes or ())

        def node_request(w: Workload) -> Resources:
            req = w.pod_request
            return req if count_pods else Resources({k: v for k, v in req.items() if k != PODS})

        def launch(key: str, pods: int, now: float) -> int:
            """Start as many of ``pods`` as fit now; returns how many are left waiting."""
            nonlocal seq, next_batch
            w = items[key].workload
            placed: list[int] = []
            if self.nodes is not None:
                req = node_request(w)
                for i, n in enumerate(self.nodes):
                    used = node_used[i]
                    while len(placed) < pods and all(
                        used.get(k, 0) + v <= n.allocatable.get(k, 0) for k, v in req.items()
                    ):
                        for k, v in req.items():
                            used[k] = used.get(k, 0) + v
                        placed.append(i)
                if w.gang and len(placed) < pods:  # all or nothing
                    for i in placed:
                        for k, v in req.items():
                            node_used[i][k] -= v
                    placed = []
                count = len(placed)
            else:
                count = pods
            if count:
                batches[next_batch] = (key, count, placed)
                live.setdefault(key, set()).add(next_batch)
                heapq.heappush(events, (now + items[key].duration, _FINISH, seq, key, next_batch))
                seq += 1
                next_batch += 1
            return pods - count

        def stop_batch(bid: int) -> tuple[str, int]:
            key, count, placed = batches.pop(bid)
            live[key].discard(bid)
            req = node_request(items[key].workload)
            for i in placed:
                for k, v in req.items():
                    node_used[i][k] -= v
            return key, count

        def retry_unplaced(now: float) -> None:
            for entry in unplaced:
                entry[1] = launch(entry[0], entry[1], now)
            unplaced[:] = [e for e in unplaced if e[1]]

        def account(now: float) -> None:
            nonlocal last_t
            dt = now - last_t
            if dt > 0:
                for q, vec in usage_rate.items():
                    if vec:
                        acc = integral[q]
                        for k, v in vec.items():
                            acc[k] = acc.get(k, 0.0) + v * dt
            last_t = now

        def use(queue: str, total: Resources, sign: int) -> None:
            vec = usage_rate.setdefault(queue, {})
            for k, v in total.items():
                vec[k] = vec.get(k, 0) + sign * v

        n_cycles = 0
        while events and n_cycles < max_cycles:
            now = events[0][0]
            if now > until:
                break
            account(now)
            while events and events[0][0] == now:
                _, kind, _, key, ep = heapq.heappop(events)
                if kind == _ARRIVE:
                    pending[key] = items[key].workload
                elif kind == _FINISH:
                    if ep not in batches:
                        continue  # its workload was evicted
                    _, count = stop_batch(ep)
                    remaining[key] -= count
                    if remaining[key] == 0:
                        a = running.pop(key)
                        use(a.workload.queue, a.workload.total, -1)
                        records[key].finished = now
                        makespan = max(makespan, now)
                    retry_unplaced(now)
                elif kind == _EVICT:
                    evicting.discard(key)
                    if key in running:
                        a = running.pop(key)
                        use(a.workload.queue, a.workload.total, -1)
                        records[key].evictions += 1
                        pending[key] = a.workload
                        for bid in sorted(live.get(key, ())):
                            stop_batch(bid)
                        unplaced[:] = [e for e in unplaced if e[0] != key]
                        retry_unplaced(now)
                else:
                    wakes.discard(now)

            snap = Snapshot(
                now,
                self.queues,
                list(pending.values()),
                list(running.values()),
                node_snapshot(),
                self.global_rate,
                self.global_burst,
            )
            t0 = time.process_time_ns()
            d = self.scheduler.cycle(snap)
            cpu = time.process_time_ns() - t0
            n_cycles += 1
            cycles.append(CycleStat(now, cpu, len(d.admit), len(d.preempt), len(snap.pending)))
            if self.on_cycle is not None:
                self.on_cycle(snap, d)

            for adm in d.admit:
                w = pending.pop(adm.key)
                running[adm.key] = AdmittedWorkload(w, now)
                use(w.queue, w.total, 1)
                rec = records[adm.key]
                if rec.first_admitted is None:
                    rec.first_admitted = now
                rec.last_admitted = now
                remaining[adm.key] = w.pod_count
                left = launch(adm.key, w.pod_count, now)
                if left:
                    unplaced.append([adm.key, left])
            for p in d.preempt:
                if p.victim_key in running and p.victim_key not in evicting:
                    evicting.add(p.victim_key)
                    preemptions.append((now, p.preemptor_key, p.victim_key))
                    heapq.heappush(events, (now + self.eviction_delay, _EVICT, seq, p.victim_key, 0))
                    seq += 1
            if d.wake_at is not None and d.wake_at not in wakes:
                wakes.add(d.wake_at)
                heapq.heappush(events, (d.wake_at, _WAKE, seq, "", 0))
                seq += 1

        unfinished = sorted(k for k, r in records.items() if r.finished is None)
        return SimResult(records, cycles, makespan, integral, preemptions, unfinished)
