"""Runtime estimates: how long a workload is expected to run once admitted.

Budgets (``budget``) charge a workload its estimate before it starts, backfill (``backfill``) admits
work around a reservation only if its estimate ends in time, and queue ETAs (issue 15) add estimates
up. One rule serves all of them, in this order:

1. **declared**: the ``expectedDurationSeconds`` of the step or stream job, when set;
2. **history**: the ``HISTORY_PERCENTILE``-th percentile (nearest rank) of the last ``HISTORY_SIZE``
   runtimes of the same step in the same *scope* (a CronWorkflow's runs share a scope, a workflow's
   foreach items and reruns share one), once at least ``HISTORY_MIN_SAMPLES`` are known. A high
   percentile because an estimate that is too short is the costly mistake: a backfilled job that
   overruns delays the reservation it was meant to fit before;
3. **default**: ``DEFAULT_SECONDS`` (one hour; ``RuntimeHistory(default=...)``), the fallback for work
   never seen before. Budgets then charge an hour up front and backfill treats the work as long.

An estimate never kills anything: a workload that runs past it keeps running, budgets account what
it really used, and a reservation waiting for it moves later.

Pure and deterministic: runtimes come in as numbers (the operator measures them from pods' start and
finish times), and the same records give the same estimates.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

DEFAULT_SECONDS = 3600.0
HISTORY_PERCENTILE = 90.0
HISTORY_MIN_SAMPLES = 3
HISTORY_SIZE = 50
# Scopes (step histories) remembered; the least recently recorded are forgotten beyond this.
MAX_SCOPES = 10_000

Source = Literal["declared", "history", "default"]


@dataclass(frozen=True, slots=True)
class Estimate:
    """Expected runtime in seconds and where it comes from (shown to users next to ETAs)."""

    seconds: float
    source: Source

    def describe(self) -> str:
        return f"{format_seconds(self.seconds)} ({self.source})"


def percentile(samples: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``pct``% of the samples at or below
    it (a value that was really observed, never an interpolation)."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("percentile of no samples")
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def estimate(
    declared: float | None, history: Iterable[float] = (), default: float = DEFAULT_SECONDS
) -> Estimate:
    """The estimate from a declared duration and past runtimes, by the rule in the module docstring."""
    if declared is not None and declared > 0:
        return Estimate(float(declared), "declared")
    past = list(history)
    if len(past) >= HISTORY_MIN_SAMPLES:
        return Estimate(percentile(past, HISTORY_PERCENTILE), "history")
    return Estimate(default, "default")


class RuntimeHistory:
    """Past runtimes per (scope, step), the last ``HISTORY_SIZE`` of each.

    ``record`` is idempotent per run id (a pod's name, say), so the operator may feed every finished
    pod it sees on every cycle, and again after a restart, without counting one twice.
    """

    __slots__ = ("_runs", "_seen", "default")

    def __init__(self, default: float = DEFAULT_SECONDS) -> None:
        if default <= 0:
            raise ValueError("the default estimate must be positive")
        self.default = default
        self._runs: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()

    def record(self, scope: str, step: str, seconds: float, run_id: str) -> bool:
        """Add one finished run (False if ``run_id`` was already recorded or ``seconds`` is negative)."""
        if run_id in self._seen or seconds < 0 or math.isnan(seconds):
            return False
        self._seen[run_id] = None
        if len(self._seen) > MAX_SCOPES * HISTORY_SIZE:
            self._seen.popitem(last=False)
        key = (scope, step)
        runs = self._runs.get(key)
        if runs is None:
            runs = self._runs[key] = deque(maxlen=HISTORY_SIZE)
            if len(self._runs) > MAX_SCOPES:
                self._runs.popitem(last=False)
        else:
            self._runs.move_to_end(key)
        runs.append(float(seconds))
        return True

    def runtimes(self, scope: str, step: str) -> tuple[float, ...]:
        return tuple(self._runs.get((scope, step), ()))

    def estimate(self, scope: str, step: str, declared: float | None = None) -> Estimate:
        return estimate(declared, self._runs.get((scope, step), ()), self.default)


def format_seconds(seconds: float) -> str:
    """A duration for reasons and status: 45s, 12m30s, 3h05m, 2d4h."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m}m{r:02d}s" if r else f"{m}m"
    if s < 86400:
        h, r = divmod(s, 3600)
        return f"{h}h{r // 60:02d}m" if r // 60 else f"{h}h"
    d, r = divmod(s, 86400)
    return f"{d}d{r // 3600}h" if r // 3600 else f"{d}d"
