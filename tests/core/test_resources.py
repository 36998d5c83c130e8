from hypothesis import given
from hypothesis import strategies as st

from meson.core import ZERO, Resources

vec = st.dictionaries(
    st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "pods"]), st.integers(-(10**12), 10**12)
).map(Resources)


def test_missing_names_read_as_zero_and_zero_entries_vanish():
    r = Resources(cpu=500, memory=0)
    assert r["memory"] == 0 and "memory" not in r
    assert r == Resources({"cpu": 500}) and hash(r) == hash(Resources({"cpu": 500}))
    assert r - r == ZERO and not (r - r)


def test_arithmetic_and_fit():
    a = Resources(cpu=1500, memory=1 << 30)
    b = Resources(cpu=500, **{"nvidia.com/gpu": 1})
    assert a + b == Resources({"cpu": 2000, "memory": 1 << 30, "nvidia.com/gpu": 1})
    assert (a - b)["nvidia.com/gpu"] == -1
    assert a * 3 == Resources(cpu=4500, memory=3 << 30)
    assert b.fits_in(Resources({"cpu": 500, "nvidia.com/gpu": 2}))
    assert not b.fits_in(Resources(cpu=10_000))  # no gpu at all
    assert (a - b).positive() == Resources(cpu=1000, memory=1 << 30)


def test_dominant_share_ignores_resources_the_total_lacks():
    total = Resources(cpu=10_000, memory=100)
    assert Resources(cpu=1000, memory=50).dominant_share(total) == 0.5
    assert Resources({"cpu": 1000, "nvidia.com/gpu": 4}).dominant_share(total) == 0.1


def test_describe_uses_kubernetes_units():
    assert Resources(cpu=4000, memory=2 << 30).describe() == "cpu 4, memory 2Gi"
    assert Resources(cpu=250).describe() == "cpu 250m"


@given(vec, vec, vec)
def test_vector_space_laws(a, b, c):
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a + b) - b == a
    assert a.fits_in(a + b.positive())
    assert (a * 2) == a + a
