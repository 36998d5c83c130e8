"""Step instances: one per step, per foreach element, a gang being one instance with N pods; their
fields as persisted in ``status.steps[]`` (``_fields`` reads an entry, ``_Inst.wire`` writes one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meson.api.workflow import (
    RetryPolicy,
)
from meson.workflow.compiled import (
    _DEFAULT_BACKOFF,
    _KILLED,
    _PHASES,
    _REASONS,
    _StepInfo,
)
from meson.workflow.status import (
    WORKFLOW_MESSAGE_MAX_BYTES,
    cap_message,
)

# --------------------------------------------------------------------------------------------- instances

_NO_FIELDS = ("Waiting", 0, 0, None, None, None, None, None, None, None)


def _fields(entry: Mapping[str, Any]) -> tuple:
    """An instance's fields read from its status entry, defensively: a status edited by hand (or forged)
    must not break the cycle."""
    phase, node, message = entry.get("phase"), entry.get("node"), entry.get("message")
    return (
        phase if phase in _PHASES else "Waiting",
        max(0, _int(entry.get("attempts")) or 0),
        max(0, _int(entry.get("run")) or 0),
        _int(entry.get("start")),
        _int(entry.get("end")),
        node if isinstance(node, str) and 0 < len(node) <= 253 else None,
        _int(entry.get("exitCode")),
        message if isinstance(message, str) and message else None,
        entry.get("reason") if entry.get("reason") in _REASONS else None,
        _int(entry.get("retryAt")),
    )


class _Inst:
    __slots__ = (
        "attempts",
        "end",
        "exit_code",
        "id",
        "index",
        "info",
        "message",
        "node",
        "phase",
        "reason",
        "retry_at",
        "run",
        "start",
    )

    def __init__(self, info: _StepInfo, index: int | None, fields: tuple = _NO_FIELDS) -> None:
        self.info = info
        self.index = index
        self.id = info.name if index is None else f"{info.name}-{index}"
        self.phase: str
        self.attempts: int
        self.run: int
        self.start: int | None
        self.end: int | None
        self.node: str | None
        self.exit_code: int | None
        self.message: str | None
        self.reason: str | None
        self.retry_at: int | None
        (
            self.phase,
            self.attempts,
            self.run,
            self.start,
            self.end,
            self.node,
            self.exit_code,
            self.message,
            self.reason,
            self.retry_at,
        ) = fields

    def copy_as(self, index: int) -> _Inst:
        inst = _Inst(self.info, index)
        inst.phase, inst.message = self.phase, self.message
        return inst

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.info.name}
        if self.index is not None:
            out["index"] = self.index
        out["phase"] = self.phase
        for key, value in (
            ("attempts", self.attempts or None),
            ("run", self.run or None),
            ("start", self.start),
            ("end", self.end),
            ("node", self.node),
            ("exitCode", self.exit_code),
            ("reason", self.reason),
            ("retryAt", self.retry_at),
            ("message", cap_message(self.message)),
        ):
            if value is not None:
                out[key] = value
        return out

    def state(self, lean: bool) -> dict[str, Any]:
        """The fields of a range entry (no per-instance times or node). Lean: only what decisions read, the
        message only when it marks an instance the engine stopped (stop_state tells them from failures)."""
        message = self.message
        if lean and not (self.phase == "Failed" and (message or "").startswith(_KILLED)):
            message = None
        out: dict[str, Any] = {"phase": self.phase}
        for key, value in (
            ("attempts", self.attempts or None),
            ("run", self.run or None),
            ("exitCode", None if lean else self.exit_code),
            ("reason", None if lean else self.reason),
            ("retryAt", self.retry_at),
            ("message", cap_message(message)),
        ):
            if value is not None:
                out[key] = value
        return out

    def reset(self) -> None:
        """Back to Waiting for a restart: attempts counted afresh, ``run`` kept (pod names stay unique)."""
        self.phase = "Waiting"
        self.attempts = 0
        self.start = self.end = self.node = self.exit_code = self.message = self.reason = self.retry_at = None

    @property
    def count(self) -> int:
        """Instances this entry stands for (an unexpanded foreach step stands for all its elements)."""
        if self.info.items is not None and self.index is None:
            return len(self.info.items)
        return 1


_BUCKET = {
    "Waiting": "pending",
    "Pending": "pending",
    "Running": "running",
    "Retrying": "running",
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Skipped": "skipped",
    "Omitted": "skipped",
    "Cached": "succeeded",
}


def _bounded_condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    """A condition copied from the old status, its texts capped (a status may have been edited)."""
    out = dict(condition)
    for key in ("type", "reason", "message"):
        if key in out:
            out[key] = cap_message(out[key], WORKFLOW_MESSAGE_MAX_BYTES)
    return out


_INDEXES_LOST = (
    "step {step}: status entries lost their indexes (is the Workflow CRD older than the operator? apply "
    "crds/); the step's instances are read again from their pods"
)


def _whole_step(info: _StepInfo, fields: tuple, entries: int) -> bool:
    """Whether an entry without index of a foreach step can stand for the whole unexpanded step. Several
    such entries, or a phase only expanded instances have, are range entries whose ``indexes`` the API
    server pruned (a CRD older than the operator): read as the whole step they would mislead."""
    phase = fields[0]
    return entries == 1 and (phase in ("Waiting", "Skipped", "Omitted", "Failed") or not info.items)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pod_index(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    backoff = policy.backoff or _DEFAULT_BACKOFF
    delay = backoff.initial_seconds * backoff.factor ** max(0, attempt - 1)
    if backoff.max_seconds is not None:
        delay = min(delay, backoff.max_seconds)
    return delay
