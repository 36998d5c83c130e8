"""A discrete-event simulator that drives the scheduler in virtual time.

It belongs to the product, in the pure core: the benchmarks use it, and so will the user-facing what-if
command (issue 15), which needs exactly this: the real scheduler, no Kubernetes, virtual time.

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
        running: Sequence[tuple[TraceItem, float]] = (),
        start: float = -math.inf,
    ) -> None:
        """Replaying a live cluster's snapshot from time ``start``: ``running`` are the workloads already
        admitted then, each with when it was admitted (their ``duration`` is what is left of their run
        from ``start``), and workloads that arrived earlier are pending from ``start`` on (their
        ``created`` still orders them)."""
        self.queues = tuple(queues)
        self.trace = sorted(trace, key=lambda t: (t.workload.created, t.workload.key))
        self.running = tuple(running)
        self.start = start
        self.scheduler = scheduler or Scheduler()
        self.nodes = None if nodes is None else sorted(nodes, key=lambda n: n.name)
        self.global_rate = global_rate
        self.global_burst = global_burst
        self.eviction_delay = eviction_delay
        self.on_cycle = on_cycle

    def run(
        self, until: float = math.inf, max_cycles: int = 10_000_000, cpu_budget: float | None = None
    ) -> SimResult:
        """Play the trace: at each event time, apply every event due (arrivals, evictions, pod batch
        completions, wake-ups), then run one scheduling cycle and apply its decisions. ``cpu_budget``
        (seconds of this process's CPU) stops the run early; what is unfinished is in the result."""
        state = _Run(self)
        n_cycles = 0
        deadline = None if cpu_budget is None else time.process_time() + cpu_budget
        while state.events and n_cycles < max_cycles:
            now = state.events[0][0]
            if now > until or (deadline is not None and time.process_time() > deadline):
                break
            state.account(now)
            state.apply_events(now)
            state.cycle(now)
            n_cycles += 1
        return state.result()


class _Run:
    """The state of one simulation: the event queue, pending and running workloads, and the fake nodes.

    Pods run in batches: a batch is the pods placed together, and they finish together. A workload is
    done when all its pods are. Gangs start as one batch; other workloads' pods start as room frees
    (kube-scheduler's queue, oldest first)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.items = {t.workload.key: t for t in (*sim.trace, *(t for t, _ in sim.running))}
        self.records = {
            k: WorkloadRecord(k, t.workload.queue, t.cls, t.workload.created) for k, t in self.items.items()
        }
        self.events: list[tuple[float, int, int, str, int]] = []
        self.seq = 0
        for t in sim.trace:
            self.push(max(t.workload.created, sim.start), _ARRIVE, t.workload.key)
        self.pending: dict[str, Workload] = {}
        self.running: dict[str, AdmittedWorkload] = {}
        self.evicting: set[str] = set()
        self.wakes: set[float] = set()
        self.cycles: list[CycleStat] = []
        self.preemptions: list[tuple[float, str | None, str]] = []
        self.usage_rate: dict[str, dict[str, int]] = {q.name: {} for q in sim.queues}
        self.integral: dict[str, dict[str, float]] = {q.name: {} for q in sim.queues}
        self.last_t = 0.0
        self.makespan = 0.0
        self.node_used: list[dict[str, int]] = [{} for _ in sim.nodes or ()]
        self.batches: dict[int, tuple[str, int, list[int]]] = {}  # id -> (key, pods, node per pod)
        self.live: dict[str, set[int]] = {}  # key -> its running batch ids
        self.remaining: dict[str, int] = {}  # key -> pods not finished yet
        self.unplaced: list[list] = []  # [key, pods], FIFO
        self.next_batch = 0
        # Pod slots count only if the nodes report them (as in ``capacity``).
        self.count_pods = any(PODS in n.allocatable for n in sim.nodes or ())
        origin = sim.start if sim.start > -math.inf else 0.0
        self.last_t = origin
        for item, admitted in sim.running:
            self.pending[item.workload.key] = item.workload
            self.admit(item.workload.key, origin)
            self.running[item.workload.key] = AdmittedWorkload(item.workload, admitted)
            self.records[item.workload.key].first_admitted = admitted

    def push(self, when: float, kind: int, key: str, batch: int = 0) -> None:
        heapq.heappush(self.events, (when, kind, self.seq, key, batch))
        self.seq += 1

    # --- events ------------------------------------------------------------------------------------
    def apply_events(self, now: float) -> None:
        while self.events and self.events[0][0] == now:
            _, kind, _, key, batch = heapq.heappop(self.events)
            if kind == _ARRIVE:
                self.pending[key] = self.items[key].workload
            elif kind == _FINISH:
                self.finish(key, batch, now)
            elif kind == _EVICT:
                self.evict(key, now)
            else:
                self.wakes.discard(now)

    def finish(self, key: str, batch: int, now: float) -> None:
        if batch not in self.batches:
            return  # its workload was evicted
        _, count = self.stop_batch(batch)
        self.remaining[key] -= count
        if self.remaining[key] == 0:
            a = self.running.pop(key)
            self.use(a.workload.queue, a.workload.total, -1)
            self.records[key].finished = now
            self.makespan = max(self.makespan, now)
        self.retry_unplaced(now)

    def evict(self, key: str, now: float) -> None:
        self.evicting.discard(key)
        if key not in self.running:
            return
        a = self.running.pop(key)
        self.use(a.workload.queue, a.workload.total, -1)
        self.records[key].evictions += 1
        self.pending[key] = a.workload
        for bid in sorted(self.live.get(key, ())):
            self.stop_batch(bid)
        self.unplaced[:] = [e for e in self.unplaced if e[0] != key]
        self.retry_unplaced(now)

    # --- one scheduling cycle ----------------------------------------------------------------------
    def cycle(self, now: float) -> None:
        sim = self.sim
        snap = Snapshot(
            now,
            sim.queues,
            list(self.pending.values()),
            list(self.running.values()),
            self.node_snapshot(),
            sim.global_rate,
            sim.global_burst,
        )
        t0 = time.process_time_ns()
        d = sim.scheduler.cycle(snap)
        cpu = time.process_time_ns() - t0
        self.cycles.append(CycleStat(now, cpu, len(d.admit), len(d.preempt), len(snap.pending)))
        if sim.on_cycle is not None:
            sim.on_cycle(snap, d)
        for adm in d.admit:
            self.admit(adm.key, now)
        for p in d.preempt:
            if p.victim_key in self.running and p.victim_key not in self.evicting:
                self.evicting.add(p.victim_key)
                self.preemptions.append((now, p.preemptor_key, p.victim_key))
                self.push(now + sim.eviction_delay, _EVICT, p.victim_key)
        if d.wake_at is not None and d.wake_at not in self.wakes:
            self.wakes.add(d.wake_at)
            self.push(d.wake_at, _WAKE, "")

    def admit(self, key: str, now: float) -> None:
        w = self.pending.pop(key)
        self.running[key] = AdmittedWorkload(w, now)
        self.use(w.queue, w.total, 1)
        rec = self.records[key]
        if rec.first_admitted is None:
            rec.first_admitted = now
        rec.last_admitted = now
        self.remaining[key] = w.pod_count
        left = self.launch(key, w.pod_count, now)
        if left:
            self.unplaced.append([key, left])

    # --- the fake nodes ----------------------------------------------------------------------------
    def node_snapshot(self) -> list[NodeCapacity] | None:
        if self.sim.nodes is None:
            return None
        return [
            NodeCapacity(n.name, n.allocatable, n.allocatable - used)
            for n, used in zip(self.sim.nodes, self.node_used, strict=True)
        ]

    def node_request(self, w: Workload) -> Resources:
        req = w.pod_request
        return req if self.count_pods else Resources({k: v for k, v in req.items() if k != PODS})

    def place(self, w: Workload, pods: int) -> list[int]:
        """First fit of up to ``pods`` pods on the nodes (a gang all or nothing): their node indexes."""
        assert self.sim.nodes is not None
        req = self.node_request(w)
        placed: list[int] = []
        for i, n in enumerate(self.sim.nodes):
            used = self.node_used[i]
            while len(placed) < pods and all(
                used.get(k, 0) + v <= n.allocatable.get(k, 0) for k, v in req.items()
            ):
                for k, v in req.items():
                    used[k] = used.get(k, 0) + v
                placed.append(i)
        if w.gang and len(placed) < pods:
            for i in placed:
                for k, v in req.items():
                    self.node_used[i][k] -= v
            placed = []
        return placed

    def launch(self, key: str, pods: int, now: float) -> int:
        """Start as many of ``pods`` as fit now; returns how many are left waiting."""
        placed: list[int] = []
        if self.sim.nodes is not None:
            placed = self.place(self.items[key].workload, pods)
            count = len(placed)
        else:
            count = pods
        if count:
            self.batches[self.next_batch] = (key, count, placed)
            self.live.setdefault(key, set()).add(self.next_batch)
            self.push(now + self.items[key].duration, _FINISH, key, self.next_batch)
            self.next_batch += 1
        return pods - count

    def stop_batch(self, bid: int) -> tuple[str, int]:
        key, count, placed = self.batches.pop(bid)
        self.live[key].discard(bid)
        req = self.node_request(self.items[key].workload)
        for i in placed:
            for k, v in req.items():
                self.node_used[i][k] -= v
        return key, count

    def retry_unplaced(self, now: float) -> None:
        for entry in self.unplaced:
            entry[1] = self.launch(entry[0], entry[1], now)
        self.unplaced[:] = [e for e in self.unplaced if e[1]]

    # --- recording ---------------------------------------------------------------------------------
    def account(self, now: float) -> None:
        dt = now - self.last_t
        if dt > 0:
            for q, vec in self.usage_rate.items():
                if vec:
                    acc = self.integral[q]
                    for k, v in vec.items():
                        acc[k] = acc.get(k, 0.0) + v * dt
        self.last_t = now

    def use(self, queue: str, total: Resources, sign: int) -> None:
        vec = self.usage_rate.setdefault(queue, {})
        for k, v in total.items():
            vec[k] = vec.get(k, 0) + sign * v

    def result(self) -> SimResult:
        unfinished = sorted(k for k, r in self.records.items() if r.finished is None)
        return SimResult(
            self.records, self.cycles, self.makespan, self.integral, self.preemptions, unfinished
        )
