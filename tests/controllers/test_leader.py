"""Leader election on a Lease: one leader at a time, takeover only after expiry (on our own clock),
conflicts lose, a released Lease is taken at once."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from meson.adapters import kube
from meson.controllers.leader import LeaderElector
from tests.controllers.fake_cluster import api_error


class FakeLeases:
    """coordination.k8s.io/v1 Leases with resourceVersion checks, as the API server keeps them."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict] = {}
        self.rv = 0

    def _out(self, obj: dict) -> SimpleNamespace:
        return SimpleNamespace(data=json.dumps(obj).encode())

    def read_namespaced_lease(self, name, namespace, **_):
        if (namespace, name) not in self.leases:
            raise api_error(404, "not found")
        return self._out(self.leases[(namespace, name)])

    def create_namespaced_lease(self, namespace, body, **_):
        name = body["metadata"]["name"]
        if (namespace, name) in self.leases:
            raise api_error(409, "already exists")
        return self._store(namespace, name, body)

    def replace_namespaced_lease(self, name, namespace, body, **_):
        current = self.leases[(namespace, name)]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise api_error(409, "the object has been modified")
        return self._store(namespace, name, body)

    def _store(self, namespace, name, body):
        self.rv += 1
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.leases[(namespace, name)] = obj
        return self._out(obj)

    def holder(self) -> str | None:
        return next(iter(self.leases.values()))["spec"].get("holderIdentity")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def leases(monkeypatch) -> FakeLeases:
    monkeypatch.setattr(kube, "_sleep", lambda _s: None)
    return FakeLeases()


def elector(leases: FakeLeases, clock: Clock, identity: str) -> LeaderElector:
    clients = SimpleNamespace(coordination=leases)
    return LeaderElector(clients, "ops", "meson", identity, lease_duration=15, clock=clock, wall=clock)  # type: ignore[arg-type]


def test_one_leader_at_a_time_and_takeover_only_after_expiry(leases: FakeLeases) -> None:
    clock = Clock()
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    for _ in range(5):  # a renews every 5 s: b never gets in
        clock.now += 5
        assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert leases.holder() == "a"
    # a stops renewing (crashed): b takes over only once 15 s have passed since b saw the last renewal.
    clock.now += 14
    assert not b.try_acquire_or_renew()
    clock.now += 2
    assert b.try_acquire_or_renew() and leases.holder() == "b"
    spec = next(iter(leases.leases.values()))["spec"]
    assert spec["leaseTransitions"] == 1
    # a comes back: it sees b's fresh record and stays a standby.
    assert not a.try_acquire_or_renew() and not a.leading


def test_a_skewed_remote_clock_does_not_make_the_lease_look_expired(leases: FakeLeases) -> None:
    clock, remote = Clock(), Clock()
    remote.now -= 3600  # the holder's wall clock is an hour behind
    holder = LeaderElector(
        SimpleNamespace(coordination=leases),
        "ops",
        "meson",
        "a",
        lease_duration=15,
        clock=clock,
        wall=remote,  # type: ignore[arg-type]
    )
    other = elector(leases, clock, "b")
    assert holder.try_acquire_or_renew()
    assert not other.try_acquire_or_renew(), "expiry is judged on b's clock, from when b saw the record"


def test_racing_candidates_cannot_both_win(leases: FakeLeases) -> None:
    clock = Clock()
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew()
    clock.now += 30  # a's lease expired for everyone
    assert not b.try_acquire_or_renew()  # b first sees the record now...
    clock.now += 16
    # ... both read the same expired record; a's write lands first, b's carries a stale resourceVersion.
    read = leases.read_namespaced_lease
    snapshot = read("meson", "ops")
    leases.read_namespaced_lease = lambda *args, **kw: snapshot  # type: ignore[method-assign]
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not b.leading
    leases.read_namespaced_lease = read  # type: ignore[method-assign]
    assert leases.holder() == "a"


def test_a_released_lease_is_taken_at_once(leases: FakeLeases) -> None:
    clock = Clock()
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    a.release()
    assert not a.leading and leases.holder() is None
    assert b.try_acquire_or_renew() and leases.holder() == "b"


def test_a_leader_whose_renewals_hang_gives_up_at_its_renew_deadline(leases: FakeLeases) -> None:
    """A partition holds requests forever (no answer, no error): the renew deadline must still be kept, so
    the leader stops before its Lease can expire for the others."""
    import asyncio
    import threading
    import time

    partition = threading.Event()
    healed = threading.Event()
    read = leases.read_namespaced_lease

    def held_read(*args, **kwargs):
        if partition.is_set():
            healed.wait(10)
        return read(*args, **kwargs)

    leases.read_namespaced_lease = held_read  # type: ignore[method-assign]
    clients = SimpleNamespace(coordination=leases)
    e = LeaderElector(clients, "ops", "meson", "a", lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)  # type: ignore[arg-type]
    lost_at: list[float] = []

    async def run() -> float:
        async def start() -> None:
            partition.set()  # leading: from now on nothing answers

        cut = time.monotonic()
        await asyncio.wait_for(e.lead(start, lambda: lost_at.append(time.monotonic())), timeout=5)
        return cut

    try:
        cut = asyncio.run(run())
    finally:
        healed.set()
    assert lost_at and not e.leading
    assert lost_at[0] - cut < 1.5, "still leading when the Lease expired"
