"""Time-window budgets: resource-seconds a queue may use per window ("2,000 GPU-hours a week").

A ``Budget`` on a queue limits what its whole subtree uses of one resource over a window:

* ``Day`` / ``Week``: calendar windows in a time zone (``zoneinfo``; a week starts on Monday 00:00),
  so usage resets at local midnight whatever the daylight-saving offset;
* ``Sliding``: the last ``sliding_seconds``, kept as ``SLIDING_BUCKETS`` buckets (usage older than
  the window drops out a bucket at a time, so a budget frees up gradually).

**Accounting** (``BudgetLedger``): a workload uses ``amount * seconds`` of a resource from its
admission to its end. Between two cycles the ledger charges each queue what was admitted at the end
of the earlier cycle; a workload that ended in between is charged up to the later cycle (never less
than it used). The ledger's state (``BudgetState``) is plain numbers, so the operator can persist it
in the Queue's status and restore it after a restart: nothing is lost but the time between the last
persisted state and the restart, which is charged at the usage seen after the restart.

**Enforcement** (``BudgetGate``): a workload is admitted only if, for every budget on its queue's
path naming a resource it requests,

    used in the window + what running work will still use (by its estimate) + its own cost <= limit

where, for a calendar window, future use counts only until the window resets, and for a sliding
window counts in full (usage ahead of ``now`` stays in every window that covers it, so this bound
holds for every window position). With exact estimates no admission can make a window exceed its
budget. Otherwise the workload waits with a reason naming the budget and when it resets. Running
work is never stopped for a budget unless the budget says ``evict`` (then, once usage reaches the
limit, the queue's preemptible running workloads using that resource are preempted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from meson.core.estimate import format_seconds

Window = Literal["Day", "Week", "Sliding"]
SLIDING_BUCKETS = 24


@dataclass(frozen=True, slots=True)
class Budget:
    """``limit`` in resource-seconds (canonical units: millicore-seconds, byte-seconds, count-seconds)."""

    resource: str
    limit: float
    window: Window = "Week"
    time_zone: str = "UTC"
    sliding_seconds: float = 0.0
    evict: bool = False

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"budget for {self.resource}: limit must not be negative")
        if self.window == "Sliding" and self.sliding_seconds <= 0:
            raise ValueError(f"budget for {self.resource}: a sliding window needs a positive length")
        if self.window != "Sliding":
            ZoneInfo(self.time_zone)  # raises for an unknown zone

    def start(self, now: float) -> float:
        """Start of the window containing ``now`` (for a sliding window, ``now - length``)."""
        if self.window == "Sliding":
            return now - self.sliding_seconds
        tz = ZoneInfo(self.time_zone)
        local = datetime.fromtimestamp(now, tz)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.window == "Week":
            day -= timedelta(days=day.weekday())
        # Re-attach the zone to the wall-clock midnight: the right offset on a daylight-saving day.
        return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()

    def resets_at(self, now: float) -> float | None:
        """When the calendar window containing ``now`` ends (None for a sliding window)."""
        if self.window == "Sliding":
            return None
        tz = ZoneInfo(self.time_zone)
        start = datetime.fromtimestamp(self.start(now), tz)
        nxt = start + timedelta(days=7 if self.window == "Week" else 1)
        return datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()

    def describe_window(self) -> str:
        if self.window == "Sliding":
            return f"in the last {format_seconds(self.sliding_seconds)}"
        return "this week" if self.window == "Week" else "today"

    def bucket(self) -> float:
        return self.sliding_seconds / SLIDING_BUCKETS


def hours(resource: str, resource_seconds: float) -> str:
    """Resource-seconds (canonical units) as resource-hours in the unit ``unit`` names."""
    amount = resource_seconds / 3600.0
    if resource == "cpu":
        amount /= 1000.0
    elif resource in _BYTES:
        amount /= float(1 << 30)
    return f"{amount:.0f}" if amount >= 1000 else f"{amount:.4g}"


def from_hours(resource: str, resource_hours: float) -> float:
    """Resource-hours as the API states them (see ``unit``) in resource-seconds, canonical units."""
    scale = 1000.0 if resource == "cpu" else float(1 << 30) if resource in _BYTES else 1.0
    return resource_hours * scale * 3600.0


def unit(resource: str) -> str:
    """What ``hours`` counts in: ``nvidia.com/gpu-hours``, ``cpu core-hours``, ``memory GiB-hours``."""
    if resource == "cpu":
        return "cpu core-hours"
    if resource in _BYTES:
        return f"{resource} GiB-hours"
    return f"{resource}-hours"


_BYTES = frozenset({"memory", "ephemeral-storage", "storage"})


@dataclass(slots=True)
class BudgetState:
    """What a budget has used: ``used`` in the window that started at ``window_start`` (calendar), or
    per bucket start (sliding), accounted up to ``as_of``. Persisted as it is."""

    window_start: float = 0.0
    used: float = 0.0
    as_of: float | None = None
    buckets: dict[float, float] = field(default_factory=dict)

    def total(self, budget: Budget, now: float) -> float:
        if budget.window != "Sliding":
            return self.used if self.window_start == budget.start(now) else 0.0
        horizon = now - budget.sliding_seconds
        return sum(v for b, v in self.buckets.items() if b + budget.bucket() > horizon)


class BudgetLedger:
    """Usage per (queue, resource) budget, integrated between cycles (see the module docstring)."""

    __slots__ = ("_rate", "states")

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], BudgetState] = {}
        self._rate: dict[str, dict[str, float]] | None = None  # queue -> resource -> amount, last cycle

    def restore(self, queue: str, resource: str, state: BudgetState) -> None:
        """Seed a budget from persisted state (kept only if it is newer than what is known)."""
        key = (queue, resource)
        known = self.states.get(key)
        if known is None or (state.as_of or 0) > (known.as_of or 0):
            self.states[key] = state

    def advance(
        self, now: float, budgets: Mapping[str, Iterable[Budget]], usage: Mapping[str, Mapping[str, float]]
    ) -> None:
        """Charge every budget what ran since it was last charged: at the rate ``set_rate`` gave after the
        last cycle, or, for a queue with none (the first cycle, a restored state), at ``usage`` (what is
        admitted now, per queue subtree). Budgets no longer configured are forgotten."""
        live: set[tuple[str, str]] = set()
        for q, bs in budgets.items():
            for b in bs:
                key = (q, b.resource)
                live.add(key)
                st = self.states.get(key)
                if st is None:
                    st = self.states[key] = BudgetState(window_start=b.start(now), as_of=now)
                since = st.as_of if st.as_of is not None else now
                rate = self._rate.get(q, {}).get(b.resource) if self._rate is not None else None
                if rate is None:
                    rate = usage.get(q, {}).get(b.resource, 0.0)
                self._charge(b, st, since, now, rate)
        for key in [k for k in self.states if k not in live]:
            del self.states[key]

    def set_rate(self, usage: Mapping[str, Mapping[str, float]]) -> None:
        """What each queue subtree has admitted after this cycle: its rate of use until the next one."""
        self._rate = {q: dict(v) for q, v in usage.items()}

    @staticmethod
    def _charge(b: Budget, st: BudgetState, since: float, now: float, rate: float) -> None:
        if b.window != "Sliding":
            start = b.start(now)
            if st.window_start != start:  # the window reset since: only the part after it counts
                st.window_start, st.used = start, 0.0
                since = max(since, start)
            if now > since:
                st.used += rate * (now - since)
        else:
            width = b.bucket()
            t = since
            while t < now and rate:
                bstart = math.floor(t / width) * width
                end = min(now, bstart + width)
                st.buckets[bstart] = st.buckets.get(bstart, 0.0) + rate * (end - t)
                t = end
            horizon = now - b.sliding_seconds
            st.buckets = {k: v for k, v in st.buckets.items() if k + width > horizon}
            st.window_start = horizon
            st.used = st.total(b, now)
        st.as_of = now


@dataclass(frozen=True, slots=True)
class BudgetBlock:
    queue: str
    budget: Budget
    used: float  # in the window, plus what running work will still use
    need: float
    resets_at: float | None
    later: bool = False  # the window that would overrun is a later one (the estimate reaches it)

    def describe(self, estimate: str) -> str:
        b, r = self.budget, self.budget.resource
        left = max(self.budget.limit - self.used, 0.0)
        when = "in the next window" if self.later else b.describe_window()
        text = (
            f"budget: queue {self.queue} has {hours(r, left)} of its {hours(r, b.limit)} {unit(r)} left "
            f"{when} (running work counted to its estimate); needs {hours(r, self.need)} for "
            f"its estimate of {estimate}"
        )
        if self.resets_at is not None:
            stamp = datetime.fromtimestamp(self.resets_at, ZoneInfo(b.time_zone)).strftime(
                "%Y-%m-%d %H:%M %Z"
            )
            text += f"; resets {stamp}"
        return text
