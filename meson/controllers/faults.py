"""Per-object isolation: one tenant's bad object must never stop the scheduling loop for everyone.

The loop plans, translates and writes every object inside a guard. An object that raises is recorded
here as a :class:`Fault` and skipped for the rest of the cycle; every other object proceeds. A fault is
reported once per distinct failure (not every cycle): one log line with the traceback, one Warning Event
and one increment of ``meson_object_errors_total{kind,stage}``. A Workflow that cannot be planned or
written also gets the condition ``Reconciled=False`` (the stage as reason) so ``kubectl describe`` says
why it is stuck; CronWorkflows and Queues carry ``Valid``/``Active`` conditions for what is wrong with
their spec, and report a failed write through the Event.
A fault clears itself when the same object goes through the same stage cleanly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from meson.adapters import metrics

log = logging.getLogger("meson.faults")
T = TypeVar("T")

#: Longest message kept in a condition or an Event (Kubernetes caps Event messages at 1 KiB).
MESSAGE_MAX = 1024
RECONCILED = "Reconciled"


@dataclass(frozen=True)
class Fault:
    kind: str  # Workflow, CronWorkflow, Queue
    stage: str  # plan, translate, write, create
    message: str

    @property
    def reason(self) -> str:
        return {
            "plan": "PlanFailed",
            "translate": "TranslateFailed",
            "write": "WriteFailed",
            "create": "CreateFailed",
            "revision": "RevisionWriteFailed",
        }.get(self.stage, "Failed")


def describe(exc: BaseException) -> str:
    """A one-line, bounded description of an exception for a condition or an Event."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    body = getattr(exc, "body", None)  # an ApiException carries the server's message in its body
    if body:
        text = f"{getattr(exc, 'status', '')} {getattr(exc, 'reason', '')}: {str(body)[:600]}".strip()
    return f"{type(exc).__name__}: {text}"[:MESSAGE_MAX]


class Faults:
    """The loop's register of objects that failed a stage, with once-only reporting."""

    def __init__(self, report: Callable[[Fault, Hashable], None] | None = None) -> None:
        self._current: dict[tuple[str, Hashable, str], Fault] = {}
        self._report = report

    def guard(self, kind: str, key: Hashable, stage: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Run ``fn``; on an exception record the fault and return None (the object is skipped)."""
        try:
            result = fn(*args)
        except Exception as exc:  # isolation: any failure of one object is that object's, not the loop's
            self.record(kind, key, stage, exc)
            return None
        self.clear(kind, key, stage)
        return result

    async def guard_write(
        self, kind: str, key: Hashable, write: Awaitable[Any], stage: str = "write"
    ) -> None:
        """Await a write; on an exception record the fault (the object's alone) instead of raising."""
        try:
            await write
        except Exception as exc:  # isolation: a write that fails is that object's fault only
            self.record(kind, key, stage, exc)
        else:
            self.clear(kind, key, stage)

    def record(self, kind: str, key: Hashable, stage: str, exc: BaseException) -> Fault:
        fault = Fault(kind, stage, describe(exc))
        slot = (kind, key, stage)
        if self._current.get(slot) != fault:
            self._current[slot] = fault
            metrics.OBJECT_ERRORS.labels(kind=kind, stage=stage).inc()
            log.error("%s %s: %s failed; skipping it this cycle", kind, _name(key), stage, exc_info=exc)
            if self._report is not None:
                self._report(fault, key)
        return fault

    def clear(self, kind: str, key: Hashable, stage: str) -> None:
        self._current.pop((kind, key, stage), None)

    def of(self, kind: str, key: Hashable) -> Fault | None:
        """The current fault of an object, if any (the first stage that failed)."""
        for stage in ("plan", "translate", "create", "write", "revision"):
            fault = self._current.get((kind, key, stage))
            if fault is not None:
                return fault
        return None

    def at_stage(self, kind: str, stage: str) -> list[tuple[Hashable, Fault]]:
        """The objects of ``kind`` with a current fault at ``stage``, and that fault."""
        return [(key, fault) for (k, key, st), fault in self._current.items() if k == kind and st == stage]

    def forget(self, live: Callable[[str, Hashable], bool]) -> None:
        for slot in [s for s in self._current if not live(s[0], s[1])]:
            del self._current[slot]


def _name(key: Hashable) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_condition(status: dict, condition: dict) -> dict:
    """``status`` with ``condition`` set (replacing one of the same type; the transition time is kept
    when nothing but the time changed, so a repeated fault does not churn the object)."""
    conditions = list(status.get("conditions") or [])
    for i, old in enumerate(conditions):
        if old.get("type") == condition["type"]:
            same = all(old.get(k) == condition.get(k) for k in ("status", "reason", "message"))
            if same:
                return status
            conditions[i] = condition
            break
    else:
        conditions.append(condition)
    return {**status, "conditions": conditions}


def without_condition(status: dict, kind: str) -> dict:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if len(conditions) == len(status.get("conditions") or []):
        return status
    out = dict(status)
    if conditions:
        out["conditions"] = conditions
    else:
        out.pop("conditions", None)
    return out


def condition(kind: str, ok: bool, reason: str, message: str, generation: int | None = None) -> dict:
    out: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:MESSAGE_MAX],
        "lastTransitionTime": now_rfc3339(),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def fault_condition(fault: Fault, generation: int | None = None) -> dict:
    return condition(RECONCILED, False, fault.reason, f"{fault.stage} failed: {fault.message}", generation)
