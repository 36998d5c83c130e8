from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meson.api.quantity import canonical, canonical_map, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (2, Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("1Ki", Decimal(1024)),
        ("2Gi", Decimal(2 * 2**30)),
        ("10G", Decimal(10**10)),
        ("1e3", Decimal(1000)),
        ("1.5E-3", Decimal("0.0015")),
        ("100u", Decimal("0.0001")),
        (".5", Decimal("0.5")),
        ("+3", Decimal(3)),
    ],
)
def test_parse(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "bad", ["", "lots", "1.5.2", "5 Gi", "Gi", "1gi", "--1", True, None, [1], float("inf")]
)
def test_parse_rejects(bad):
    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_canonical_units():
    assert canonical("cpu", "500m") == 500
    assert canonical("cpu", 2) == 2000
    assert canonical("cpu", "0.1") == 100
    assert canonical("memory", "2Gi") == 2 * 2**30
    assert canonical("nvidia.com/gpu", 4) == 4
    assert canonical("pods", "1k") == 1000
    assert canonical("cpu", "1u") == 1  # rounded up
    assert canonical_map({"cpu": "1500m", "memory": "1Mi"}) == {"cpu": 1500, "memory": 2**20}


@given(st.integers(min_value=0, max_value=10**7))
def test_cpu_round_trip(millis):
    assert canonical("cpu", format_quantity("cpu", millis)) == millis


@given(st.integers(min_value=0, max_value=2**50))
def test_memory_round_trip(amount):
    assert canonical("memory", format_quantity("memory", amount)) == amount
