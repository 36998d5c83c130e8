"""Pure statistics and table rendering for `make bench` (no cluster, unit-tested in tests/bench)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def by_class(samples: Iterable[tuple[str, float]]) -> dict[str, dict[str, float | int | None]]:
    """{class: {n, mean, p50, p99, max}} from (class, value) pairs."""
    groups: dict[str, list[float]] = {}
    for cls, v in samples:
        groups.setdefault(cls, []).append(v)
    return {
        cls: {
            "n": len(vs),
            "mean": mean(vs),
            "p50": percentile(vs, 50),
            "p99": percentile(vs, 99),
            "max": max(vs),
        }
        for cls, vs in sorted(groups.items())
    }


@dataclass(frozen=True)
class Interval:
    """A pod holding ``amount`` of its queue's quota from ``start`` to ``end`` (None: still holding)."""

    queue: str
    start: float
    end: float | None
    amount: int


def usage_fraction(
    intervals: Iterable[Interval], nominal: Mapping[str, int], t0: float, t1: float
) -> dict[str, float]:
    """Per queue: time-averaged usage over [t0, t1] as a fraction of its nominal quota (Kueue's metric)."""
    span = t1 - t0
    used = dict.fromkeys(nominal, 0.0)
    if span <= 0:
        return used
    for iv in intervals:
        if iv.queue not in used:
            continue
        start, end = max(iv.start, t0), min(iv.end if iv.end is not None else t1, t1)
        if end > start:
            used[iv.queue] += iv.amount * (end - start)
    return {q: used[q] / (nominal[q] * span) for q in nominal}


def violations(usage: Mapping[str, int], limits: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """(queue, usage, limit) for every queue whose sampled usage exceeds its limit."""
    return [(q, u, limits[q]) for q, u in sorted(usage.items()) if q in limits and u > limits[q]]


def rate_per(count: int, seconds: float | None, per: float = 1.0) -> float | None:
    return count * per / seconds if seconds else None


def fmt(v: object, unit: str = "", digits: int = 1) -> str:
    """A table cell: None -> "-", floats rounded, ints with thousands separators."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v}{unit}"


def render_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table (first column left-aligned, the others right-aligned)."""
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for n, r in enumerate(table):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; '|' in cells is escaped."""

    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    out = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|",
    ]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
