"""Policy experiments in the simulator (issue 13), part of ``make bench-core``: measurements, not tests.

1. **Backfill**: one 32-core queue, a stream of small jobs (1-4 cores, 20-120 s) and a gang of 24-32
   cores (5 min) every 10 minutes, for 4 hours. Utilisation, the gangs' wait and the small jobs' wait
   under StrictFIFO, BestEffortFIFO (with Meson's 60 s starvation guard, and with none: pure best
   effort) and Backfill (exact estimates, then estimates off by a factor of 0.5-2).
2. **Day/night fairness**: two tenants of equal weight under a 10-core parent; tenant a runs alone for
   8 hours, then b arrives and both want everything. b's share of the usage in the first half-hour,
   hour and two hours, under instantaneous DRF and with decayed usage (half-life 1 hour).
"""

from __future__ import annotations

import random
import statistics

from meson.core import QueueConfig, Resources, Scheduler, Workload
from meson.core.simulator import SimResult, Simulator, TraceItem

CPU = 1000
HOUR = 3600.0
ARRIVALS = 4 * HOUR


def _job(key: str, queue: str, cores: int, at: float, runtime: float, estimate: float, cls: str) -> TraceItem:
    w = Workload(key, queue, 0, at, Resources(cpu=cores * CPU), estimate=estimate)
    return TraceItem(w, runtime, cls)


def backfill_trace(noise: float, seed: int = 11) -> list[TraceItem]:
    rng = random.Random(seed)
    trace: list[TraceItem] = []
    t, i = 0.0, 0
    while t < ARRIVALS:
        t += rng.expovariate(1 / 8.0)  # a small job every 8 s: with the gangs, more than 32 cores of work
        runtime = rng.uniform(20, 120)
        est = runtime * (rng.uniform(0.5, 2) if noise else 1)
        trace.append(_job(f"s{i:05d}", "q", rng.randint(1, 4), t, runtime, est, "small"))
        i += 1
    for g in range(24):
        runtime = 300.0
        est = runtime * (rng.uniform(0.5, 2) if noise else 1)
        trace.append(_job(f"g{g:03d}", "q", rng.randint(24, 32), g * 600.0 + 30, runtime, est, "gang"))
    return trace


def _stats(res: SimResult, trace: list[TraceItem], capacity: int) -> dict:
    waits: dict[str, list[float]] = {"small": [], "gang": []}
    for t in trace:
        r = res.records[t.workload.key]
        if r.first_admitted is not None:
            waits[t.cls].append(r.first_admitted - r.arrival)
    used = res.usage_integral["q"].get("cpu", 0) / CPU
    # While work keeps arriving (the first 4 h) the queue always has work waiting: idle cores there are
    # what a strategy wastes.
    busy = sum(t.workload.total["cpu"] / CPU * _overlap(res, t, 0.0, ARRIVALS) for t in trace)
    return {
        "utilisation_arrivals_pct": 100 * busy / (capacity * ARRIVALS),
        "utilisation_pct": 100 * used / (capacity * res.makespan),
        "makespan_s": res.makespan,
        "gang_wait_mean_s": statistics.mean(waits["gang"]) if waits["gang"] else None,
        "gang_wait_max_s": max(waits["gang"]) if waits["gang"] else None,
        "gangs_admitted": len(waits["gang"]),
        "small_wait_mean_s": statistics.mean(waits["small"]),
        "small_wait_p99_s": statistics.quantiles(waits["small"], n=100)[98],
        "unfinished": len(res.unfinished),
    }


def _overlap(res: SimResult, t: TraceItem, t0: float, t1: float) -> float:
    r = res.records[t.workload.key]
    if r.last_admitted is None:
        return 0.0
    end = r.finished if r.finished is not None else t1
    return max(0.0, min(end, t1) - max(r.last_admitted, t0))


def run_backfill() -> dict:
    capacity = 32
    runs = {
        "StrictFIFO": ("StrictFIFO", 60.0, 0),
        "BestEffortFIFO (guard 60 s)": ("BestEffortFIFO", 60.0, 0),
        "BestEffortFIFO (no guard)": ("BestEffortFIFO", 1e9, 0),
        "Backfill (exact estimates)": ("Backfill", 60.0, 0),
        "Backfill (estimates x0.5-2)": ("Backfill", 60.0, 1),
    }
    out = {}
    for label, (strategy, guard, noise) in runs.items():
        queues = [QueueConfig("q", guaranteed=Resources(cpu=capacity * CPU), strategy=strategy)]
        trace = backfill_trace(noise)
        res = Simulator(queues, trace, scheduler=Scheduler(reserve_after=guard)).run(until=12 * HOUR)
        out[label] = _stats(res, trace, capacity)
    return out


def day_night_trace(seed: int = 3) -> list[TraceItem]:
    rng = random.Random(seed)
    morning = 8 * HOUR
    trace = [_job(f"a{i:05d}", "a", 1, 0.0, rng.uniform(30, 90), 60, "a") for i in range(int(11 * HOUR / 6))]
    trace += [
        _job(f"b{i:05d}", "b", 1, morning, rng.uniform(30, 90), 60, "b") for i in range(int(3 * HOUR / 6))
    ]
    return trace


def run_day_night() -> dict:
    morning = 8 * HOUR
    trace = day_night_trace()
    out = {}
    for label, half_life in (("instantaneous DRF", None), ("decayed usage (half-life 1 h)", HOUR)):
        queues = [
            QueueConfig("root", guaranteed=Resources(cpu=10 * CPU), fair_half_life=half_life),
            QueueConfig("a", parent="root"),
            QueueConfig("b", parent="root"),
        ]
        res = Simulator(queues, trace).run(until=morning + 2 * HOUR)
        shares = {}
        for span in (0.5, 1.0, 2.0):
            use = {q: _used(res, trace, q, morning, morning + span * HOUR) for q in ("a", "b")}
            shares[f"b_share_first_{span:g}h_pct"] = 100 * use["b"] / (use["a"] + use["b"])
        out[label] = shares
    return out


def _used(res: SimResult, trace: list[TraceItem], queue: str, t0: float, t1: float) -> float:
    return sum(_overlap(res, t, t0, t1) for t in trace if t.workload.queue == queue)


def print_policy() -> dict:
    """Run both experiments, print their tables, return their numbers (for the JSON)."""
    backfill = run_backfill()
    print("\nBackfill: one 32-core queue, 4 h of small jobs (1-4 cores) and a 24-32-core gang every 10 min")
    cols = (
        "utilisation first 4 h / all",
        "gang wait mean / max",
        "gangs",
        "small wait mean / p99",
        "unfinished",
    )
    rows = [("strategy", *cols)]
    for label, r in backfill.items():
        rows.append(
            (
                label,
                f"{r['utilisation_arrivals_pct']:.1f}% / {r['utilisation_pct']:.1f}%",
                f"{r['gang_wait_mean_s']:.0f} s / {r['gang_wait_max_s']:.0f} s",
                f"{r['gangs_admitted']}/24",
                f"{r['small_wait_mean_s']:.1f} s / {r['small_wait_p99_s']:.0f} s",
                str(r["unfinished"]),
            )
        )
    _table(rows)
    fair = run_day_night()
    print("\nDay/night: tenant a alone for 8 h on 10 cores, then b arrives (equal weights); b's share")
    rows = [("ordering", "first 0.5 h", "first 1 h", "first 2 h")]
    for label, s in fair.items():
        rows.append((label, *(f"{s[f'b_share_first_{h}h_pct']:.1f}%" for h in ("0.5", "1", "2"))))
    _table(rows)
    return {"backfill": backfill, "day_night": fair}


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    print_policy()
