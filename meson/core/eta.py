"""Predicted start times (ETA) of pending workloads: the discrete-event simulator run forward from a
snapshot with the same scheduler, so a prediction follows the policy that will decide (priorities,
fair sharing, borrowing, reclaim, rate limits), not a rule of thumb next to it.

Running work ends at its runtime estimate (``Workload.estimate``, from :mod:`meson.core.estimate`:
declared ``expectedDurationSeconds``, else history, else the default); one that has outlived its
estimate is taken to end ``min_left`` seconds from now. Pending work runs for its own estimate once
admitted. Nothing arrives that is not pending yet, so a prediction is optimistic when higher-priority
work keeps coming. Quota only: ``Snapshot.nodes`` is not replayed (a workload that fits its quota but
not the nodes is predicted too early).

Pure and bounded: the simulation stops after ``cpu_budget`` seconds of CPU or at ``horizon`` seconds
ahead; workloads not admitted by then have no prediction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from meson.core.model import Snapshot
from meson.core.scheduler import Scheduler
from meson.core.simulator import Simulator, TraceItem

MIN_LEFT = 1.0
DEFAULT_CPU_BUDGET = 0.2  # seconds of CPU per prediction
DEFAULT_HORIZON = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Prediction:
    """``at``: pending workload key -> predicted admission time (the snapshot's clock); ``complete``:
    every pending workload got one (the budget and horizon sufficed); ``cpu_s``: CPU spent."""

    at: dict[str, float]
    complete: bool
    cpu_s: float


def predict(
    snapshot: Snapshot,
    *,
    scheduler: Callable[[], Scheduler] = Scheduler,
    cpu_budget: float = DEFAULT_CPU_BUDGET,
    horizon: float = DEFAULT_HORIZON,
    min_left: float = MIN_LEFT,
) -> Prediction:
    """When each pending workload of ``snapshot`` is predicted to be admitted. ``scheduler`` makes a
    fresh scheduler with the operator's tuning (the prediction must not disturb the live one's state)."""
    t0 = time.process_time()
    now = snapshot.now
    running = []
    for a in snapshot.admitted:
        left = a.admitted_at + a.workload.estimate - now
        running.append((TraceItem(a.workload, left if left > 0 else min_left), a.admitted_at))
    pending = [TraceItem(w, w.estimate) for w in snapshot.pending]
    if not pending:
        return Prediction({}, True, time.process_time() - t0)
    sim = Simulator(
        snapshot.queues,
        pending,
        scheduler=scheduler(),
        global_rate=snapshot.global_rate,
        global_burst=snapshot.global_burst,
        running=running,
        start=now,
    )
    spent = time.process_time() - t0
    result = sim.run(until=now + horizon, cpu_budget=max(cpu_budget - spent, 0.0))
    keys = {w.key for w in snapshot.pending}
    at = {
        k: r.first_admitted for k, r in result.records.items() if k in keys and r.first_admitted is not None
    }
    return Prediction(at, len(at) == len(keys), time.process_time() - t0)


class EtaBoard:
    """The operator's latest predictions: it sees every cycle's snapshot (:meth:`seen`, which returns
    it unchanged, so the call wraps the snapshot where the loop builds it) and predicts again from it
    at most every ``interval`` seconds of the snapshot's clock, within ``cpu_budget``. Readers (the
    dashboard, metrics) look predictions up by workload key."""

    def __init__(
        self,
        scheduler: Callable[[], Scheduler] = Scheduler,
        *,
        interval: float = 30.0,
        cpu_budget: float = DEFAULT_CPU_BUDGET,
        on_refresh: Callable[[Snapshot, Prediction], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.interval = interval
        self.cpu_budget = cpu_budget
        self.on_refresh = on_refresh
        self.prediction = Prediction({}, True, 0.0)
        self.made_at: float | None = None  # the snapshot time of the prediction

    def seen(self, snapshot: Snapshot) -> Snapshot:
        if self.made_at is None or snapshot.now >= self.made_at + self.interval:
            self.prediction = predict(snapshot, scheduler=self.scheduler, cpu_budget=self.cpu_budget)
            self.made_at = snapshot.now
            if self.on_refresh is not None:
                self.on_refresh(snapshot, self.prediction)
        return snapshot

    def at(self, key: str) -> float | None:
        """The predicted admission time of pending workload ``key`` (None: none predicted)."""
        return self.prediction.at.get(key)
