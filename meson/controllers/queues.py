"""Queues in the scheduling loop: Queue objects in (as the core's configs), queue status out.

The core decides which queues are valid and does the accounting (``Decisions.queues``: pending,
admitted, usage, borrowed; ``Decisions.disabled``: each disabled queue with its reason); this module
only translates the objects and writes what the core said. A Queue's ``Active`` condition says whether
it admits (False: its configuration, or an ancestor's, is invalid, with the reason).
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
from meson.core import QueueConfig
from meson.core.resources import format_quantity

ACTIVE = "Active"
KIND = "Queue"


class Queues:
    def __init__(self, store: Store, writer: Writer, checks: SpecChecks, faults: Faults) -> None:
        self.store = store
        self.writer = writer
        self.checks = checks
        self.faults = faults
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
        return configs, unreadable

    def chain(self, name: str) -> list[str]:
        """A queue and its ancestors (whose figures all include an admission made in it)."""
        chain: list[str] = []
        current: str | None = name
        while current is not None and current not in chain:
            chain.append(current)
            current = ((self.store.queues.get(current) or {}).get("spec") or {}).get("parent")
        return chain

    def status_writes(self, decisions: Any, held: Iterable[str] = ()) -> list[Write]:
        """Each queue's status as the core accounted it (a parent counts its subtree); disabled queues say
        why. ``held``: queues whose figures count a retry of a refused pod create (written once it works,
        so a create refused again and again does not flip the figures at every retry)."""
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
            writes += self._write(name, status, None)
        for name, reason in decisions.disabled.items():
            if name in self.store.queues:
                writes += self._write(name, {"pending": 0, "admitted": 0}, reason)
        return writes

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
