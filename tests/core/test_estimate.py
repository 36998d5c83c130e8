"""Runtime estimates: declared first, then the step's history, then the documented default."""

from hypothesis import given
from hypothesis import strategies as st

from meson.core.estimate import (
    DEFAULT_SECONDS,
    HISTORY_MIN_SAMPLES,
    HISTORY_SIZE,
    RuntimeHistory,
    estimate,
    format_seconds,
    percentile,
)


def test_declared_duration_wins_over_history() -> None:
    h = RuntimeHistory()
    for i in range(5):
        h.record("ns/cron/nightly", "train", 100.0, f"pod-{i}")
    assert h.estimate("ns/cron/nightly", "train", declared=30).seconds == 30
    assert h.estimate("ns/cron/nightly", "train", declared=30).source == "declared"


def test_history_is_used_once_enough_runs_are_known() -> None:
    h = RuntimeHistory()
    for i in range(HISTORY_MIN_SAMPLES - 1):
        h.record("ns/wf/etl", "load", 60.0 + i, f"p{i}")
    assert h.estimate("ns/wf/etl", "load").source == "default"
    h.record("ns/wf/etl", "load", 90.0, "last")
    got = h.estimate("ns/wf/etl", "load")
    assert got.source == "history" and got.seconds == 90.0  # p90 of 60, 61, 90


def test_unknown_step_gets_the_default() -> None:
    assert RuntimeHistory().estimate("ns/wf/x", "a").seconds == DEFAULT_SECONDS
    assert RuntimeHistory(default=120).estimate("ns/wf/x", "a").seconds == 120


def test_a_run_is_recorded_once_and_steps_do_not_mix() -> None:
    h = RuntimeHistory()
    assert h.record("s", "a", 10, "pod-1")
    assert not h.record("s", "a", 10, "pod-1")  # seen again after a restart or the next cycle
    h.record("s", "b", 99, "pod-2")
    assert h.runtimes("s", "a") == (10.0,)
    assert h.runtimes("other", "a") == ()


def test_history_keeps_only_the_latest_runs() -> None:
    h = RuntimeHistory()
    for i in range(HISTORY_SIZE + 10):
        h.record("s", "a", float(i), f"p{i}")
    assert h.runtimes("s", "a")[0] == 10.0 and len(h.runtimes("s", "a")) == HISTORY_SIZE


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=60), st.floats(1, 100))
def test_percentile_is_an_observed_value_covering_that_share(samples: list[float], pct: float) -> None:
    p = percentile(samples, pct)
    assert p in samples
    assert sum(1 for s in samples if s <= p) >= pct / 100 * len(samples)


@given(st.lists(st.floats(0, 1e6), min_size=HISTORY_MIN_SAMPLES, max_size=60))
def test_history_estimate_is_within_the_observed_range(samples: list[float]) -> None:
    got = estimate(None, samples)
    assert min(samples) <= got.seconds <= max(samples)


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (45, 750, 3600, 11100, 187200)] == [
        "45s",
        "12m30s",
        "1h",
        "3h05m",
        "2d4h",
    ]
