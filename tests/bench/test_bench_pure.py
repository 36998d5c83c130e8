"""The pure parts of `make bench`: trace generation, statistics and table rendering (no cluster)."""

from __future__ import annotations

import pytest

from bench import report, stats
from bench.trace import CAPACITY_M, dag_levels, duration, fan_steps, floor_seconds, instances, kueue_trace


def test_full_trace_is_kueues_baseline() -> None:
    queues, arrivals = kueue_trace()
    assert len(arrivals) == 15_000
    assert len([q for q in queues if q.parent is None]) == 5
    leaves = [q for q in queues if q.parent]
    assert len(leaves) == 30 and {(q.guaranteed_m, q.limit_m) for q in leaves} == {(20_000, 120_000)}
    by_cls = {c: [a for a in arrivals if a.cls == c] for c in ("small", "medium", "large")}
    assert [len(v) for v in by_cls.values()] == [350 * 30, 100 * 30, 50 * 30]
    assert {(a.cpu_m, a.runtime, a.priority) for a in by_cls["large"]} == {(20_000, 1.0, 200)}
    assert max(a.at for a in by_cls["small"]) == pytest.approx(35.0)
    assert [a.at for a in arrivals] == sorted(a.at for a in arrivals)
    assert len({a.name for a in arrivals}) == len(arrivals)
    assert floor_seconds(arrivals, CAPACITY_M) == pytest.approx(66.0)


def test_scaled_trace_keeps_rates_and_queues() -> None:
    queues, arrivals = kueue_trace(0.1)
    assert len(queues) == 35
    assert len(arrivals) == 30 * (35 + 10 + 5)
    assert max(a.at for a in arrivals) == pytest.approx(6.0)  # 5 large at 1.2 s intervals
    assert all(a.name.startswith(a.queue) for a in arrivals)


def test_dag_shape() -> None:
    steps = fan_steps(23, 1.0, 100)
    assert sum(len(instances(s)) for s in steps) == 25
    assert dag_levels(steps) == [["start"], ["fan"], ["join"]]
    assert steps[0]["template"]["metadata"]["annotations"] == {"sim.meson.dev/duration": "1000ms"}
    assert duration(0.2) == "200ms"


def test_percentiles_and_classes() -> None:
    assert stats.percentile([], 50) is None
    assert stats.percentile([3.0], 99) == 3.0
    assert stats.percentile([1, 2, 3, 4, 5], 50) == 3
    assert stats.percentile(list(range(101)), 99) == pytest.approx(99.0)
    got = stats.by_class([("a", 1.0), ("a", 3.0), ("b", 5.0)])
    assert got["a"]["mean"] == 2.0 and got["a"]["n"] == 2 and got["b"]["p99"] == 5.0
    assert stats.ratio(3.0, 2.0) == 1.5 and stats.ratio(1.0, None) is None and stats.ratio(None, 1.0) is None


def test_usage_fraction_and_violations() -> None:
    ivs = [
        stats.Interval("q", 0.0, 5.0, 10),
        stats.Interval("q", 5.0, None, 20),
        stats.Interval("x", 0, 1, 99),
    ]
    # q: 10 units for 5 s + 20 units for 5 s over 10 s, nominal 20 -> (50 + 100) / 200
    assert stats.usage_fraction(ivs, {"q": 20}, 0.0, 10.0) == {"q": pytest.approx(0.75)}
    assert stats.usage_fraction(ivs, {"q": 20}, 3.0, 3.0) == {"q": 0.0}
    assert stats.violations({"a": 5, "b": 7, "c": 1}, {"a": 5, "b": 6}) == [("b", 7, 6)]


def test_tables_render() -> None:
    header, rows = ("metric", "Meson", "raw"), [("wall", "1.0 s", "2.0 s"), ("a|b", "-", "3")]
    text = stats.render_text(header, rows).splitlines()
    assert text[0].startswith("metric") and set(text[1]) <= {"-", " "} and text[2].endswith("2.0 s")
    assert len({len(line) for line in text[:2]}) == 1
    md = stats.render_markdown(header, rows).splitlines()
    assert md[0] == "| metric | Meson | raw |" and md[1] == "|---|--:|--:|" and md[3] == "| a\\|b | - | 3 |"
    assert stats.fmt(None) == "-" and stats.fmt(1234) == "1,234" and stats.fmt(1.25, " s", 1) == "1.2 s"


def test_summary_rows_from_results() -> None:
    tta = {c: {"mean": 1.0, "p99": 2.0} for c in ("small", "medium", "large")}
    results = {
        "kueue": {
            "meson": {
                "wall_s": 80.0,
                "workloads": 10,
                "completed": 10,
                "time_to_admission_s": tta,
                "quota_violation_samples": 0,
                "samples": 100,
            },
            "raw": {"wall_s": 64.0, "workloads": 10, "completed": 10},
        },
        "kueue_upstream": {"wall_s": 371.0, "time_to_admission_s": {"small": {"mean": 228.0}}},
        "latency": {
            "meson": {"pending": 10000, "p50_s": 0.2, "p99_s": 0.9},
            "raw": {"p50_s": 0.1, "p99_s": 0.3},
        },
    }
    rows = report.rows(results)
    assert all(len(r) == len(report.HEADER) for r in rows)
    wall = next(r for r in rows if r[0].strip() == "wall time")
    assert wall[1:5] == ("80.0 s", "64.0 s", "1.25", "371.0 s")
    assert any(
        r[0].strip().startswith("high priority created -> bound p99") and r[1] == "0.90 s" for r in rows
    )
