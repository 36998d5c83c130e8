"""Kubernetes resource quantities ("500m", "2Gi", "1e3", 4) parsed exactly.

One parser for the whole project: the API models validate with it, the controllers translate queue quotas
and pod requests with it, and the scheduling core receives the canonical integers it returns:

* ``cpu`` → millicores (``"500m"`` → 500, ``2`` → 2000),
* ``memory``, ``ephemeral-storage``, ``storage`` and ``hugepages-*`` → bytes,
* everything else (``pods``, ``nvidia.com/gpu``, any extended resource) → a plain count.

Fractions are rounded up, as the kubelet does for requests.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["QUANTITY_PATTERN", "canonical", "canonical_map", "format_quantity", "parse_quantity"]

# The same grammar as k8s.io/apimachinery/pkg/api/resource (signed number, optional suffix or exponent).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_BYTE_RESOURCES = {"memory", "ephemeral-storage", "storage"}


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """Parse a Kubernetes quantity into an exact :class:`~decimal.Decimal` (in base units).

    Raises :class:`ValueError` with a clear message when ``value`` is not a quantity.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a quantity")
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a quantity")
    text = value.strip()
    if not _QUANTITY_RE.match(text):
        raise ValueError(f"{value!r} is not a quantity (expected e.g. 500m, 2, 1.5Gi, 10G)")
    match = re.match(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$", text)
    assert match is not None
    number, suffix = Decimal(match.group(1)), match.group(2)
    try:
        if suffix in _BINARY:
            return number * _BINARY[suffix]
        if suffix in _DECIMAL:
            return number * _DECIMAL[suffix]
        return number * (Decimal(10) ** int(suffix[1:]))
    except (InvalidOperation, ValueError, OverflowError) as exc:  # pragma: no cover - absurd exponents
        raise ValueError(f"{value!r} is not a quantity") from exc


def canonical(resource: str, value: str | int | float | Decimal) -> int:
    """The canonical integer for ``value`` of ``resource``: cpu millicores, bytes, or a count (rounded up)."""
    quantity = parse_quantity(value)
    if resource == "cpu":
        quantity *= 1000
    return math.ceil(quantity)


def canonical_map(resources: dict[str, str | int]) -> dict[str, int]:
    """:func:`canonical` applied to every entry of a resource map (``{"cpu": "500m"}`` → ``{"cpu": 500}``)."""
    return {name: canonical(name, value) for name, value in resources.items()}


def format_quantity(resource: str, amount: int) -> str | int:
    """Inverse of :func:`canonical` for status fields: ``("cpu", 1500)`` → ``"1500m"``, bytes → ``"2Gi"``."""
    if resource == "cpu":
        return str(amount // 1000) if amount % 1000 == 0 else f"{amount}m"
    if resource in _BYTE_RESOURCES or resource.startswith("hugepages-"):
        for suffix, factor in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
            if amount and amount % factor == 0:
                return f"{amount // factor}{suffix}"
        return str(amount)
    return amount
