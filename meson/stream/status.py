"""The stream job's status (pure): conditions with stable transition times, revision history, wire form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meson.stream.rollout import Bounds
from meson.workflow.compiled import rfc3339

__all__ = ["build_status", "conditions", "history"]

MESSAGE_MAX = 1024


def build_status(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The status as written: no None values, the message capped."""
    out = {k: v for k, v in fields.items() if v is not None and k != "deadlineExceeded"}
    if isinstance(out.get("message"), str):
        out["message"] = out["message"][:MESSAGE_MAX]
    return out


def _progressing(fields: Mapping[str, Any]) -> tuple[str, str, str]:
    phase = fields["phase"]
    if phase in ("Suspended", "Failed"):
        return "False", phase if phase == "Suspended" else "RestartBudgetExceeded", fields["message"]
    if phase == "RollingBack":
        return "False", "ProgressDeadlineExceeded", fields["message"]
    if fields.get("failedRevision"):
        return "False", "RolledBack", fields["message"]
    if fields.get("deadlineExceeded"):
        return "False", "ProgressDeadlineExceeded", "not all replicas became available within the deadline"
    if fields.get("rolloutStartedAt"):
        return "True", "RolloutInProgress", fields["message"]
    return "True", "NewRevisionAvailable", f"revision {fields['currentRevision']} is stable"


def _available(fields: Mapping[str, Any], available: int, b: Bounds) -> tuple[str, str, str]:
    phase = fields["phase"]
    if phase == "Failed":
        return "False", "RestartBudgetExceeded", fields["message"]
    if phase == "Suspended":
        return "False", "Suspended", "suspended"
    needed = max(0, b.replicas - b.unavailable)
    text = f"{available} of {b.replicas} replicas available (at least {needed} needed)"
    if available >= needed:
        return "True", "MinimumReplicasAvailable", text
    return "False", "MinimumReplicasUnavailable", text


def conditions(
    old: Mapping[str, Any],
    fields: Mapping[str, Any],
    available: int,
    b: Bounds,
    now: float,
    invalid: str | None = None,
) -> list[dict[str, Any]]:
    """Valid, Available, Progressing; a condition keeps its transition time while its status is unchanged."""
    if invalid is not None:
        wanted = [("Valid", "False", "InvalidSpec", invalid)]
    else:
        wanted = [
            ("Valid", "True", "Valid", "the spec is valid"),
            ("Available", *_available(fields, available, b)),
            ("Progressing", *_progressing(fields)),
        ]
    before = {c.get("type"): c for c in old.get("conditions") or [] if isinstance(c, Mapping)}
    out = [dict(c) for t, c in before.items() if t not in {w[0] for w in wanted}]
    for kind, status, reason, message in wanted:
        prev = before.get(kind) or {}
        when = prev.get("lastTransitionTime") if prev.get("status") == status else None
        cond = {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": str(message)[:MESSAGE_MAX],
            "lastTransitionTime": when or rfc3339(now),
        }
        if fields.get("observedGeneration") is not None:
            cond["observedGeneration"] = fields["observedGeneration"]
        out.append(cond)
    return sorted(out, key=lambda c: str(c.get("type")))


def history(
    previous: Any,
    recorded: Mapping[str, Any],
    templates: Mapping[str, Any],
    target: str,
    protect: set[str],
    limit: int,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Revisions to record and to forget, and the history to keep (oldest first, ``target`` last).

    At most ``limit`` old revisions are kept besides the protected ones (target, latest, stable, those with
    live pods); old revisions unknown to the history count as the oldest."""
    order = [r for r in previous if isinstance(r, str)] if isinstance(previous, list) else []
    order = [r for r in order if r != target] + [target]
    protect = protect | {target}
    record = {r: dict(templates[r]) for r in sorted(protect) if r not in recorded and r in templates}
    known = set(recorded) | set(record)
    rank = {r: i for i, r in enumerate(order)}
    olds = sorted((r for r in known if r not in protect), key=lambda r: (r in rank, rank.get(r, 0), r))
    forget = olds[: max(0, len(olds) - limit)]
    kept = [r for r in order if r in known and r not in forget]
    return record, sorted(forget), kept
