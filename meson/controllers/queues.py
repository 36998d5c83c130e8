"""Queues in the scheduling loop: Queue objects in (as the core's configs), queue status out.

The core decides which queues are valid and does the accounting (``Decisions.queues``: pending,
admitted, usage, borrowed; ``Decisions.disabled``: each disabled queue with its reason); this module
only translates the objects and writes what the core said. A Queue's ``Active`` condition says whether
it admits (False: its configuration, or an ancestor's, is invalid, with the reason).

Budgets (issue 13): the core accounts each budget's use; ``status.budgets`` persists it (at most every
``BUDGET_PERSIST_SECONDS`` while only the use moves, at once when a window resets or the budget changes),
and a restarted operator hands it back to the core before its first cycle, so a restart loses at most
that interval (charged at the usage seen after the restart).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meson.adapters import metrics
from meson.controllers import faults, translate
from meson.controllers.checks import SpecChecks
from meson.controllers.faults import Faults
from meson.controllers.inflight import Write
from meson.controllers.store import Store
from meson.controllers.writer import Writer, merge_patch
from meson.core import QueueConfig, Scheduler
from meson.core.budget import BudgetState, hours
from meson.core.model import BudgetReport
from meson.core.resources import format_quantity
from meson.workflow import rfc3339

ACTIVE = "Active"
KIND = "Queue"
# While only a budget's use moves, its status is rewritten at most this often.
BUDGET_PERSIST_SECONDS = 10.0
# Decayed usage (fair sharing) moves at every cycle: persisted at most this often (a restart loses the
# use of at most that long; its half-life is typically hours).
DECAY_PERSIST_SECONDS = 60.0


class Queues:
    def __init__(
        self,
        store: Store,
        writer: Writer,
        checks: SpecChecks,
        faults: Faults,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.checks = checks
        self.faults = faults
        self.scheduler = scheduler
        self._restored: set[str] = set()  # queues whose persisted budget use was handed to the core
        self._budgets_at: dict[str, tuple[float, list]] = {}  # queue -> (when, budgets) last written
        self._decayed_at: dict[str, tuple[float, dict]] = {}  # queue -> (when, decayed usage) last written
        self._written: dict[str, dict] = {}  # the last status written per queue
        self._reported: dict[str, str] = {}  # the last reason a queue was reported disabled for

    def configs(self) -> tuple[list[QueueConfig], dict[str, str]]:
        """Queue objects as the core's configs, and those that cannot be used with the reason why.

        A hierarchy problem (a missing parent, a cycle, a limit below the guarantees) is the core's to
        find: it disables exactly the queues it touches and says why in ``Decisions.disabled``."""
        configs, unreadable = [], {}
        for name, obj in list(self.store.queues.items()):
            problems = self.checks.problems(KIND, obj)
            if problems:
                unreadable[name] = "; ".join(problems)
                continue
            config = self.faults.guard(KIND, name, "translate", translate.queue_config, obj)
            if config is None:
                unreadable[name] = "its spec could not be read (see the operator's events)"
            else:
                configs.append(config)
                if name not in self._restored:
                    self._restored.add(name)
                    self._restore_budgets(name, obj)
        return configs, unreadable

    def _restore_budgets(self, name: str, obj: dict) -> None:
        """Hand the use persisted in the queue's status back to the core (after a restart)."""
        if self.scheduler is None:
            return
        status = obj.get("status") or {}
        if status.get("decayedUsage") and status.get("decayedAsOf") is not None:
            usage = {k: float(v) for k, v in status["decayedUsage"].items()}
            self.scheduler.restore_decayed(name, usage, float(status["decayedAsOf"]))
        for b in status.get("budgets") or []:
            used, as_of = b.get("usedResourceSeconds"), b.get("asOf")
            if used is None or as_of is None or "resource" not in b:
                continue
            buckets = {float(x["start"]): float(x["resourceSeconds"]) for x in b.get("buckets") or []}
            start = translate.epoch(b.get("windowStart")) or 0.0
            self.scheduler.restore_budget(
                name, b["resource"], BudgetState(start, float(used), float(as_of), buckets)
            )

    def chain(self, name: str) -> list[str]:
        """A queue and its ancestors (whose figures all include an admission made in it)."""
        chain: list[str] = []
        current: str | None = name
        while current is not None and current not in chain:
            chain.append(current)
            current = ((self.store.queues.get(current) or {}).get("spec") or {}).get("parent")
        return chain

    def status_writes(
        self, decisions: Any, held: Iterable[str] = (), wakes: list[float] | None = None
    ) -> list[Write]:
        """Each queue's status as the core accounted it (a parent counts its subtree); disabled queues say
        why. ``held``: queues whose figures count a retry of a refused pod create (written once it works,
        so a create refused again and again does not flip the figures at every retry). ``wakes`` gets the time
        a budget's use, held back, is due to be persisted."""
        held = set(held)
        writes: list[Write] = []
        for name, acct in decisions.queues.items():
            metrics.PENDING.labels(queue=name).set(acct.pending)
            metrics.ADMITTED.labels(queue=name).set(acct.admitted)
            if name in held:
                continue
            status = {
                "pending": acct.pending,
                "admitted": acct.admitted,
                "usage": {k: format_quantity(k, v) for k, v in sorted(acct.usage.items())},
                "borrowed": {k: format_quantity(k, v) for k, v in sorted(acct.borrowed.items())},
            }
            reports = [r for (q, _), r in sorted(decisions.budgets.items()) if q == name]
            if reports:
                status["budgets"] = self._budgets(name, reports, wakes)
            if name in decisions.decayed:
                status.update(self._decayed(name, decisions.decayed[name], decisions.now))
            writes += self._write(name, status, None)
        for name, reason in decisions.disabled.items():
            if name in self.store.queues:
                writes += self._write(name, {"pending": 0, "admitted": 0}, reason)
        return writes

    def _budgets(self, name: str, reports: list[BudgetReport], wakes: list[float] | None) -> list[dict]:
        """The budgets' status: the last one written while only their use moved, within the interval."""
        now = reports[0].as_of
        for r in reports:
            metrics.BUDGET_USED.labels(queue=name, resource=r.budget.resource).set(
                float(hours(r.budget.resource, r.used))
            )
            metrics.BUDGET_LIMIT.labels(queue=name, resource=r.budget.resource).set(
                float(hours(r.budget.resource, r.budget.limit))
            )
        fresh = [budget_status(r) for r in reports]
        last = self._budgets_at.get(name)
        if last is not None and not _moved(last[1], fresh):
            return last[1]  # nothing used since: the persisted state (and its asOf) still holds
        if last is not None and now < last[0] + BUDGET_PERSIST_SECONDS and _same_windows(last[1], fresh):
            if wakes is not None and _moved(last[1], fresh):
                wakes.append(last[0] + BUDGET_PERSIST_SECONDS)  # persist it then, even if nothing happens
            return last[1]
        self._budgets_at[name] = (now, fresh)
        return fresh

    def _decayed(self, name: str, usage: dict[str, float], now: float) -> dict:
        """The decayed usage to show: the last one written, until DECAY_PERSIST_SECONDS have passed."""
        last = self._decayed_at.get(name)
        if last is None or now >= last[0] + DECAY_PERSIST_SECONDS:
            fresh = {
                "decayedUsage": {k: round(v, 1) for k, v in sorted(usage.items())},
                "decayedAsOf": round(now, 3),
            }
            last = self._decayed_at[name] = (now, fresh)
        return last[1]

    def _write(self, name: str, status: dict, disabled: str | None) -> list[Write]:
        """The write of one queue's status with its Active condition (none if nothing changed)."""
        old = (self.store.queues.get(name) or {}).get("status") or {}
        active = next((c for c in old.get("conditions") or [] if c.get("type") == ACTIVE), None)
        if disabled is None:
            cond = faults.condition(ACTIVE, True, "Ready", "admitting workloads")
        else:
            cond = faults.condition(ACTIVE, False, "InvalidConfiguration", disabled)
            if (active is None or active.get("message") != disabled) and self._reported.get(name) != disabled:
                self._reported[name] = disabled  # once, even while the watch lags behind our write
                self.writer.event(self.store.queues[name], "Warning", "QueueDisabled", disabled)
        same = active is not None and all(
            active.get(k) == cond.get(k) for k in ("status", "reason", "message")
        )
        status = {**status, "conditions": [active if same else cond]}
        if self._written.get(name) == status:
            return []
        return [((KIND, name), self._patch(name, status, merge_patch(status, old)))]

    async def _patch(self, name: str, status: dict, body: dict) -> None:
        try:
            await self.writer.patch_status("queues", None, name, body)
        except Exception as exc:  # isolation: this queue's write failed, not the cycle
            self.faults.record(KIND, name, "write", exc)
            return
        self.faults.clear(KIND, name, "write")
        self._written[name] = status


def budget_status(r: BudgetReport) -> dict:
    b = r.budget
    out = {
        "resource": b.resource,
        "window": b.window,
        "windowStart": rfc3339(r.window_start),
        "usedResourceHours": hours(b.resource, r.used),
        "limitResourceHours": hours(b.resource, b.limit),
        "usedResourceSeconds": round(r.used, 3),
        "asOf": round(r.as_of, 3),
    }
    if r.resets_at is not None:
        out["resetsAt"] = rfc3339(r.resets_at)
    if r.buckets:
        out["buckets"] = [{"start": s, "resourceSeconds": round(v, 3)} for s, v in r.buckets]
    return out


def _moved(a: list[dict], b: list[dict]) -> bool:
    """Anything but the time of accounting differs."""
    return [{k: v for k, v in x.items() if k != "asOf"} for x in a] != [
        {k: v for k, v in x.items() if k != "asOf"} for x in b
    ]


def _same_windows(a: list[dict], b: list[dict]) -> bool:
    """The same budgets in the same windows (only their use may differ)."""
    keys = ("resource", "window", "windowStart", "limitResourceHours")
    return len(a) == len(b) and all(
        all(x.get(k) == y.get(k) for k in keys) for x, y in zip(a, b, strict=True)
    )
