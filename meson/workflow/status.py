"""The wire form of a workflow status, bounded by design (pure helpers of :mod:`meson.workflow.engine`).

Why a budget. The status is stored in the same etcd object as the spec, and etcd refuses a request above
~1.5 MiB ("etcdserver: request is too large"); a spec at its documented maximums (150 steps, 10,000 foreach
items) already takes a good part of that. So the status the engine writes is at most
:data:`STATUS_BUDGET_BYTES`, measured as the API server stores it (:func:`json_size`), whatever the workflow
does: the plan keeps it within :data:`PLAN_BUDGET_BYTES` and :func:`with_queue_positions` adds at most
:data:`QUEUE_POSITION_RESERVE_BYTES`.

Entries of ``status.steps``:

* an *instance entry*, one instance: ``name``, ``index`` (foreach), ``phase``, ``attempts``, ``run``,
  ``start``, ``end``, ``node``, ``exitCode``, ``reason``, ``retryAt``, ``message``, ``position``;
* a *range entry*, many instances of one foreach step in the same state: ``name``, ``indexes``
  (``"0-4999,5001-9999"``), ``phase`` and the fields those instances share. Per-instance times and nodes
  are not kept (``start`` and ``node`` of a running instance are read again from its pods).

The engine writes the first of these levels that fits :data:`PLAN_BUDGET_BYTES`:

0. a foreach step of more than :data:`COMPACT_ABOVE` instances is written as range entries;
1. every expanded foreach step is written as range entries;
2. *lean*: range entries keep only what decisions need: phase, run, attempts, retryAt, and the message of
   instances the engine stopped (``stopped: …``);
3. *coarse*: a step's retryAt values are rounded up into :data:`RETRY_BUCKETS` values (a retry may start a
   little late, never early); Waiting and finished instances record the highest run of their phase (runs
   only grow, so pod names stay unique) and finished ones no attempts.

Only level 3 can still be too large, and only when thousands of distinct (run, attempts) pairs are live at
once (each needs its own history of relaunches). Then the engine terminates the workflow
(:data:`OVERFLOW_REASON`): every instance is finished, each foreach step is one range entry per finished phase
and per reason the engine stopped instances (a handful), each index appears once in at most 5 bytes
(indexes are below 10,000) and there are at most :data:`~meson.api.workflow.MAX_WORKFLOW_INSTANCES`
instances, so the status fits: tests/workflow/test_status_size.py builds that worst case (every index in
another entry than its neighbours) and measures at most about 320 KB.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "COMPACT_ABOVE",
    "OVERFLOW_REASON",
    "PLAN_BUDGET_BYTES",
    "QUEUE_POSITIONS_MAX",
    "QUEUE_POSITION_RESERVE_BYTES",
    "RETRY_BUCKETS",
    "STATUS_BUDGET_BYTES",
    "STEP_MESSAGE_MAX_BYTES",
    "WORKFLOW_MESSAGE_MAX_BYTES",
    "cap_message",
    "format_ranges",
    "instance_entries",
    "json_size",
    "parse_ranges",
    "range_entries",
    "with_queue_positions",
]

#: Most bytes of a workflow status (a third of etcd's request limit: the spec shares the object).
STATUS_BUDGET_BYTES = 512 * 1024
#: Most bytes of one step's message (JSON-encoded), and of the workflow's message and condition messages.
STEP_MESSAGE_MAX_BYTES = 256
WORKFLOW_MESSAGE_MAX_BYTES = 1024
#: A foreach step with more instances than this is recorded as range entries.
COMPACT_ABOVE = 100
#: Most Pending instances of a workflow that get a queue position (the first ones in their queue).
QUEUE_POSITIONS_MAX = 100
#: What positions may add: per positioned instance an entry of at most ~800 bytes (a split range grows too).
QUEUE_POSITION_RESERVE_BYTES = QUEUE_POSITIONS_MAX * 800
#: What the engine's own status may take.
PLAN_BUDGET_BYTES = STATUS_BUDGET_BYTES - QUEUE_POSITION_RESERVE_BYTES
#: Distinct retryAt values per step at the coarse level.
RETRY_BUCKETS = 16
#: Conditions kept on a status (the engine's and the controller's; a forged list is cut).
MAX_CONDITIONS = 8
#: Why a workflow whose status cannot fit is terminated.
OVERFLOW_REASON = "status too large"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ELLIPSIS = "…"
# Characters Go's JSON encoder (the API server's) writes as 6-byte escapes, and the 2-byte ones.
_SIX = frozenset("<>&\u2028\u2029")
_TWO = frozenset('"\\')
_COARSE_RUN = frozenset({"Waiting", "Succeeded", "Failed", "Skipped", "Omitted", "Cached"})
_FINISHED = frozenset({"Succeeded", "Failed", "Skipped", "Omitted", "Cached"})


def json_size(value: Any) -> int:
    """Bytes of ``value`` as the API server stores it: compact JSON, UTF-8, ``<>&`` escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    escaped = sum(text.count(ch) for ch in _SIX)
    return len(text.encode()) + 5 * escaped - 2 * (text.count("\u2028") + text.count("\u2029"))


def _encoded_len(text: str) -> int:
    """Bytes of ``text`` inside a JSON string as the API server writes it."""
    six = sum(text.count(ch) for ch in _SIX)
    two = sum(text.count(ch) for ch in _TWO)
    return len(text.encode()) + 5 * six - 2 * (text.count("\u2028") + text.count("\u2029")) + two


def cap_message(text: Any, limit: int = STEP_MESSAGE_MAX_BYTES) -> str | None:
    """``text`` on one line, cut (ending in ``…``) so its JSON encoding takes at most ``limit`` bytes."""
    if not isinstance(text, str) or not text:
        return None
    # Every character takes a byte at least: what lies beyond ``limit`` characters is cut anyway (and a
    # huge text must not sit in the cache).
    return _cap(text[: limit + 1], limit)


@functools.lru_cache(maxsize=4096)  # the same messages come back for many instances, every cycle
def _cap(text: str, limit: int) -> str:
    text = _CONTROL.sub(" ", text)
    if _encoded_len(text) <= limit:
        return text
    budget, low, high = limit - len(_ELLIPSIS.encode()), 0, len(text)
    while low < high:  # the longest prefix that fits (the encoded length grows with the prefix)
        mid = (low + high + 1) // 2
        low, high = (mid, high) if _encoded_len(text[:mid]) <= budget else (low, mid - 1)
    return text[:low] + _ELLIPSIS


# --------------------------------------------------------------------------------------------- ranges


def _spans(indexes: Iterable[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for i in indexes:
        if spans and i == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    return spans


def _format_spans(spans: Iterable[tuple[int, int]]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def format_ranges(indexes: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"`` (indexes ascending)."""
    return _format_spans(_spans(indexes))


def _parse_spans(text: Any, size: int) -> list[tuple[int, int]]:
    """The spans of a ranges text clipped to ``[0, size)``; malformed parts are ignored."""
    if not isinstance(text, str):
        return []
    spans = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or not (high.isdigit() if dash else True):
            continue
        a, b = int(low), int(high or low)
        a, b = max(a, 0), min(b, size - 1)
        if a <= b:
            spans.append((a, b))
    return spans


def parse_ranges(text: Any, size: int) -> list[int]:
    """The indexes of a ranges text below ``size`` (``"0-2,5"`` → ``[0, 1, 2, 5]``)."""
    return [i for a, b in _parse_spans(text, size) for i in range(a, b + 1)]


# --------------------------------------------------------------------------------------------- range entries


def range_entries(name: str, states: Sequence[tuple[int, dict[str, Any]]], coarse: bool) -> list[dict]:
    """One range entry per distinct state of a foreach step's instances (``(index, state)`` in index order,
    a state being the wire fields other than name and index), in the order of their first index."""
    if coarse:
        states = _coarsened(states)
    groups: dict[tuple, list[int]] = {}
    for index, state in states:
        groups.setdefault(tuple(state.items()), []).append(index)
    return [{"name": name, "indexes": format_ranges(indexes), **dict(key)} for key, indexes in groups.items()]


def _coarsened(states: Sequence[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Level 3: retryAt rounded up into RETRY_BUCKETS values; Waiting and finished instances take the highest
    run of their (phase, message) and finished ones drop attempts."""
    retry = _bucket_up({s["retryAt"] for _, s in states if "retryAt" in s}, RETRY_BUCKETS)
    top: dict[tuple, int] = {}
    for _, s in states:
        if s["phase"] in _COARSE_RUN:
            key = (s["phase"], s.get("message"))
            top[key] = max(top.get(key, 0), s.get("run", 0))
    out = []
    for index, s in states:
        s = dict(s)
        if "retryAt" in s:
            s["retryAt"] = retry[s["retryAt"]]
        if s["phase"] in _COARSE_RUN and top[(s["phase"], s.get("message"))]:
            s["run"] = top[(s["phase"], s.get("message"))]
        if s["phase"] in _FINISHED:
            s.pop("attempts", None)
        out.append((index, s))
    return out


def _bucket_up(values: set[int], buckets: int) -> dict[int, int]:
    """Each value → the largest value of its bucket (at most ``buckets`` distinct results)."""
    ordered = sorted(values)
    size = max(1, math.ceil(len(ordered) / buckets))
    out: dict[int, int] = {}
    for start in range(0, len(ordered), size):
        chunk = ordered[start : start + size]
        out.update(dict.fromkeys(chunk, chunk[-1]))
    return out


def _instance_id(entry: Mapping[str, Any]) -> str:
    index = entry.get("index")
    return entry["name"] if index is None else f"{entry['name']}-{index}"


def instance_entries(status: Mapping[str, Any], size: int = 10**9) -> dict[str, dict[str, Any]]:
    """Every instance of a status by instance id (``NAME`` or ``NAME-INDEX``), range entries expanded into
    instance entries (an instance entry wins over a range entry naming the same instance)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in status.get("steps") or []:
        if "indexes" not in entry:
            out[_instance_id(entry)] = dict(entry)
            continue
        shared = {k: v for k, v in entry.items() if k not in ("name", "indexes")}
        for i in parse_ranges(entry["indexes"], size):
            out.setdefault(f"{entry['name']}-{i}", {"name": entry["name"], "index": i, **shared})
    return out


# ------------------------------------------------------------------------------------------- queue positions


def with_queue_positions(status: Mapping[str, Any], positions: Mapping[str, tuple]) -> dict[str, Any]:
    """A copy of ``status`` where the first :data:`QUEUE_POSITIONS_MAX` Pending instances by position
    (``positions``: instance id → (position, reason[, predicted start])) get ``position``, ``message`` (the
    reason, capped) and ``eta``; such an instance inside a range entry gets its own entry. Every other
    entry loses ``position`` and ``eta``. The workflow's ``eta`` is the earliest of its steps'."""
    out = dict(status)
    if "steps" not in status:
        return out
    entries = status.get("steps") or []
    chosen = _chosen(entries, positions)
    steps: list[dict[str, Any]] = []
    for entry in entries:
        if "position" in entry or "eta" in entry:
            entry = {k: v for k, v in entry.items() if k not in ("position", "eta")}
        if entry.get("phase") != "Pending" or not chosen:
            steps.append(entry)
        elif "indexes" in entry:
            steps.extend(_split(entry, chosen))
        else:
            steps.append(_placed(entry, chosen.get(_instance_id(entry))))
    out["steps"] = steps
    etas = [e["eta"] for e in steps if "eta" in e]  # RFC 3339 in UTC: text order is time order
    if etas:
        out["eta"] = min(etas)
    else:
        out.pop("eta", None)
    return out


def _split_id(instance: str) -> tuple[str, int] | None:
    name, _, tail = instance.rpartition("-")
    return (name, int(tail)) if name and tail.isdigit() else None


def _chosen(entries: Sequence[Mapping[str, Any]], positions: Mapping[str, tuple]) -> dict[str, tuple]:
    """The positions of the first QUEUE_POSITIONS_MAX instances that are Pending in ``entries``."""
    if not positions:
        return {}
    single = {_instance_id(e) for e in entries if e.get("phase") == "Pending" and "indexes" not in e}
    ranged: dict[str, list[tuple[int, int]]] = {}
    for e in entries:
        if e.get("phase") == "Pending" and "indexes" in e:
            ranged.setdefault(e["name"], []).extend(_parse_spans(e["indexes"], 10**9))
    for spans in ranged.values():
        spans.sort()

    def pending(instance: str) -> bool:
        if instance in single:
            return True
        split = _split_id(instance)
        return split is not None and _within(ranged.get(split[0], []), split[1])

    hits = sorted((info[0], instance) for instance, info in positions.items() if pending(instance))
    return {instance: positions[instance] for _, instance in hits[:QUEUE_POSITIONS_MAX]}


def _placed(entry: dict[str, Any], hit: tuple | None) -> dict[str, Any]:
    if hit is None:
        return entry
    entry = {**entry, "position": hit[0]}
    if hit[1]:
        entry["message"] = cap_message(hit[1])
    if len(hit) > 2 and hit[2]:
        entry["eta"] = hit[2]
    return entry


def _split(entry: dict[str, Any], chosen: Mapping[str, tuple]) -> list[dict[str, Any]]:
    """A Pending range entry without its chosen instances, followed by their own entries."""
    name = entry["name"]
    spans = sorted(_parse_spans(entry["indexes"], 10**9))
    mine = (split[1] for split in map(_split_id, chosen) if split and split[0] == name)
    picked = sorted(i for i in mine if _within(spans, i))
    if not picked:
        return [entry]
    shared = {k: v for k, v in entry.items() if k not in ("name", "indexes")}
    rest = _minus(spans, picked)
    out = [{**entry, "indexes": _format_spans(rest)}] if rest else []
    for i in picked:
        out.append(_placed({"name": name, "index": i, **shared}, chosen[f"{name}-{i}"]))
    return out


def _within(spans: list[tuple[int, int]], index: int) -> bool:
    """Whether ``index`` is in one of the sorted ``spans``."""
    k = bisect.bisect_right(spans, (index, math.inf)) - 1
    return k >= 0 and spans[k][0] <= index <= spans[k][1]


def _minus(spans: list[tuple[int, int]], points: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in spans:
        for p in (p for p in points if a <= p <= b):
            if a <= p - 1:
                out.append((a, p - 1))
            a = p + 1
        if a <= b:
            out.append((a, b))
    return out
