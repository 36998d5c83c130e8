"""Resource vectors in canonical integer units.

Every quantity the scheduler reasons about (a pod's request, a queue's quota, a node's free
capacity) is a ``Resources``: an immutable mapping from resource name to an ``int`` in canonical
units (cpu in millicores, memory in bytes, pods and extended resources such as ``nvidia.com/gpu``
as counts). Integers keep the arithmetic exact, so "never exceed a limit" is a plain comparison
with no floating-point slack.

Semantics: a missing resource is zero. Zero entries are dropped on construction, so two vectors
that mean the same thing are equal and hash equal. Values may be negative (a difference such as
"free = limit - used" can be), which is why ``fits_in`` and ``positive`` exist.

The class wraps a plain dict and does its loops in Python directly: the 100k-workload benchmark
creates one per workload, so it avoids ``collections.abc`` machinery and keeps ``__slots__``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

# Human-readable units for reasons ("needs cpu 4", "memory 2Gi").
_BINARY_SUFFIXES = (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))


class Resources(Mapping[str, int]):
    """Immutable, hashable resource vector; missing names read as 0."""

    __slots__ = ("_d", "_hash")

    _d: dict[str, int]
    _hash: int | None

    def __init__(
        self, values: Mapping[str, int] | Iterable[tuple[str, int]] | None = None, /, **kw: int
    ) -> None:
        d: dict[str, int] = {}
        if values is not None:
            items = values.items() if isinstance(values, Mapping) else values
            for k, v in items:
                if v:
                    d[k] = int(v)
        for k, v in kw.items():
            if v:
                d[k] = int(v)
        self._d = d
        self._hash = None

    @classmethod
    def _wrap(cls, d: dict[str, int]) -> Resources:
        # Internal fast constructor: the caller guarantees ints and no zero entries.
        r = object.__new__(cls)
        r._d = d
        r._hash = None
        return r

    # --- Mapping protocol -------------------------------------------------------------------
    def __getitem__(self, name: str) -> int:
        return self._d.get(name, 0)

    def get(self, name: str, default: int = 0) -> int:  # type: ignore[override]
        return self._d.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def items(self):  # type: ignore[override]
        return self._d.items()

    def as_dict(self) -> dict[str, int]:
        return dict(self._d)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Resources):
            return self._d == other._d
        if isinstance(other, Mapping):
            return self._d == {k: v for k, v in other.items() if v}
        return NotImplemented

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(frozenset(self._d.items()))
        return h

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v}" for k, v in sorted(self._d.items()))
        return f"Resources({{{inner}}})"

    def __bool__(self) -> bool:
        return bool(self._d)

    # --- arithmetic -------------------------------------------------------------------------
    def __add__(self, other: Mapping[str, int]) -> Resources:
        d = dict(self._d)
        for k, v in other.items():
            s = d.get(k, 0) + v
            if s:
                d[k] = s
            else:
                d.pop(k, None)
        return Resources._wrap(d)

    def __sub__(self, other: Mapping[str, int]) -> Resources:
        d = dict(self._d)
        for k, v in other.items():
            s = d.get(k, 0) - v
            if s:
                d[k] = s
            else:
                d.pop(k, None)
        return Resources._wrap(d)

    def __mul__(self, n: int) -> Resources:
        if not isinstance(n, int):
            return NotImplemented
        if n == 1:
            return self  # immutable, so sharing is safe (and saves memory per workload)
        if n == 0:
            return ZERO
        return Resources._wrap({k: v * n for k, v in self._d.items()})

    __rmul__ = __mul__

    def __neg__(self) -> Resources:
        return Resources._wrap({k: -v for k, v in self._d.items()})

    # --- comparisons and shares -------------------------------------------------------------
    def fits_in(self, other: Mapping[str, int]) -> bool:
        """True if every component is ≤ the same component of ``other`` (missing = 0)."""
        get = other.get
        for k, v in self._d.items():  # noqa: SIM110 - hot path, a plain loop is faster than all()
            if v > get(k, 0):
                return False
        return True

    def positive(self) -> Resources:
        """Component-wise max(0, x): what is left after clamping overdrafts to zero."""
        return Resources._wrap({k: v for k, v in self._d.items() if v > 0})

    def max(self, other: Mapping[str, int]) -> Resources:
        """Component-wise maximum."""
        d = dict(self._d)
        for k, v in other.items():
            if v > d.get(k, 0):
                d[k] = v
        return Resources._wrap({k: v for k, v in d.items() if v})

    def min(self, other: Mapping[str, int]) -> Resources:
        """Component-wise minimum (missing = 0, so the result only has shared names or negatives)."""
        d: dict[str, int] = {}
        get = other.get
        for k in set(self._d) | set(other):
            v = min(self._d.get(k, 0), get(k, 0))
            if v:
                d[k] = v
        return Resources._wrap(d)

    def dominant_share(self, total: Mapping[str, int]) -> float:
        """Largest fraction of ``total`` this vector takes on any one resource (DRF's measure).

        Resources that ``total`` does not have are ignored: nothing can be allocated from them, so
        they cannot make anyone's share larger; quota checks reject such requests separately.
        """
        best = 0.0
        get = total.get
        for k, v in self._d.items():
            t = get(k, 0)
            if t > 0:
                s = v / t
                if s > best:
                    best = s
        return best

    def describe(self) -> str:
        """Human form for reasons: ``cpu 4, memory 2Gi, nvidia.com/gpu 1``."""
        return ", ".join(f"{k} {format_quantity(k, v)}" for k, v in sorted(self._d.items())) or "nothing"


ZERO = Resources()

# Every pod takes one of these: a node's allocatable ``pods`` and a queue's ``pods`` quota count it.
PODS = "pods"


def format_quantity(name: str, value: int) -> str:
    """Render one canonical quantity the way a Kubernetes user writes it."""
    if name == "cpu":
        return str(value // 1000) if value % 1000 == 0 else f"{value}m"
    if name == "memory" or name.endswith("storage"):
        for suffix, unit in _BINARY_SUFFIXES:
            if value and value % unit == 0:
                return f"{value // unit}{suffix}"
    return str(value)


def total_of(vectors: Iterable[Mapping[str, int]]) -> Resources:
    """Sum many vectors with one dict (cheaper than chaining ``+``)."""
    d: dict[str, int] = {}
    for vec in vectors:
        for k, v in vec.items():
            d[k] = d.get(k, 0) + v
    return Resources._wrap({k: v for k, v in d.items() if v})
