"""A bad queue disables only itself and the queues below it; everything else is scheduled as before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meson.core import (
    AdmittedWorkload,
    NodeCapacity,
    QueueConfig,
    Resources,
    Scheduler,
    Snapshot,
    check_queues,
    validate_queues,
)

from .helpers import admitted_keys, cpu, cycle, queue, running, wl
from .test_properties import GIB, queue_trees


def test_a_missing_parent_disables_the_queue_and_its_subtree_only():
    qs = [queue("ok", g=4), queue("team-a", "team-x", g=2), queue("a1", "team-a"), queue("a2", "a1")]
    check = check_queues(qs)
    assert [q.name for q in check.valid] == ["ok"]
    assert check.disabled == {
        "team-a": "parent team-x does not exist",
        "a1": "ancestor team-a is disabled: parent team-x does not exist",
        "a2": "ancestor team-a is disabled: parent team-x does not exist",
    }


def test_every_queue_on_a_cycle_says_so_and_the_queues_below_name_it():
    qs = [queue("team-a", "team-b"), queue("team-b", "team-a"), queue("kid", "team-b"), queue("me", "me")]
    assert check_queues(qs).disabled == {
        "team-a": "parent chain team-a -> team-b -> team-a has a cycle",
        "team-b": "parent chain team-b -> team-a -> team-b has a cycle",
        "kid": "ancestor team-b is disabled: parent chain team-b -> team-a -> team-b has a cycle",
        "me": "parent chain me -> me has a cycle",
    }
    # A chain leading into a cycle from outside it: the first queue of the cycle is the cause.
    qs = [queue("x", "y"), queue("y", "z"), queue("z", "y")]
    assert check_queues(qs).disabled["x"] == "ancestor y is disabled: parent chain y -> z -> y has a cycle"


def test_a_limit_below_the_guarantees_disables_that_subtree_not_its_ancestors():
    qs = [
        queue("org", g=20, limit=20),
        queue("capped", "org", limit=1),
        queue("greedy", "capped", g=4),
        queue("fine", "org", g=4),
    ]
    check = check_queues(qs)
    assert [q.name for q in check.valid] == ["org", "fine"]
    reason = "limit cpu 1 is below the guarantees it must honour (cpu 4)"
    assert check.disabled == {"capped": reason, "greedy": f"ancestor capped is disabled: {reason}"}
    # org's limit only has to honour what is still valid below it.
    qs = [queue("org", limit=5), queue("capped", "org", limit=1), queue("greedy", "capped", g=40)]
    assert [q.name for q in check_queues(qs).valid] == ["org"]
    # A deeper queue keeps its own reason when an ancestor is disabled too.
    qs = [
        queue("top", limit=1),
        queue("mid", "top", limit=2, g=2),
        queue("low", "mid", g=3),
        queue("other", "top", g=2),
    ]
    assert check_queues(qs).disabled == {
        "low": "ancestor mid is disabled: limit cpu 2 is below the guarantees it must honour (cpu 3)",
        "mid": "limit cpu 2 is below the guarantees it must honour (cpu 3)",
        "other": "ancestor top is disabled: limit cpu 1 is below the guarantees it must honour (cpu 2)",
        "top": "limit cpu 1 is below the guarantees it must honour (cpu 2)",
    }


def test_duplicates_and_queues_the_caller_disabled():
    qs = [queue("dup"), queue("dup", g=1), queue("kid", "dup"), queue("orphan", "broken")]
    check = check_queues(qs, {"broken": "spec.weight: must be at most 10000"})
    assert check.valid == []
    assert check.disabled == {
        "broken": "spec.weight: must be at most 10000",
        "dup": "queue name dup is defined more than once",
        "kid": "ancestor dup is disabled: queue name dup is defined more than once",
        "orphan": "ancestor broken is disabled: spec.weight: must be at most 10000",
    }


def test_validate_queues_lists_only_the_queues_at_fault():
    errors = validate_queues([queue("a", "missing"), queue("b", "a")])
    assert errors == ["queue a: parent missing does not exist"]


def test_a_cycle_with_invalid_queues_schedules_the_valid_ones_and_explains_the_rest():
    qs = [
        queue("co"),
        queue("a", "co", g=4),
        queue("b", "co", g=4),
        queue("orphan", "nowhere", g=100),
        queue("loop", "loop"),
    ]
    pending = [wl(f"a{i}", "a", created=i) for i in range(3)]
    pending += [wl("lost", "orphan"), wl("looped", "loop"), wl("ghost", "no-such-queue")]
    d = cycle(qs, pending, [running(wl("r", "orphan"))])
    assert admitted_keys(d) == ["a0", "a1", "a2"]
    assert d.disabled == {
        "loop": "parent chain loop -> loop has a cycle",
        "orphan": "parent nowhere does not exist",
    }
    assert d.pending["lost"].reason == "queue orphan is disabled: parent nowhere does not exist"
    assert not d.pending["lost"].never_fits  # fixing the queue fixes it
    assert d.pending["looped"].reason == "queue loop is disabled: parent chain loop -> loop has a cycle"
    assert d.pending["ghost"].reason == "queue no-such-queue does not exist"
    assert set(d.queues) == {"co", "a", "b"}
    assert len(d.pending) == 3


def test_queues_the_snapshot_marks_disabled_are_left_out():
    qs = [queue("a", g=4), queue("b", g=4)]
    d = Scheduler().cycle(Snapshot(0.0, qs, [wl("x", "a"), wl("y", "b")], disabled={"b": "unreadable"}))
    assert admitted_keys(d) == ["x"]
    assert d.pending["y"].reason == "queue b is disabled: unreadable"
    assert d.disabled == {"b": "unreadable"}


# --- the property: poison queues change nothing for the others --------------------------------


@st.composite
def poison_queues(draw, valid: list[QueueConfig]) -> list[QueueConfig]:
    """Missing parents, cycles of length 1..3 and limits below guarantees, with queues below them."""
    out: list[QueueConfig] = []
    g = st.integers(0, 8)
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["orphan", "cycle", "limit"]))
        top = f"poison{i}"
        if kind == "orphan":
            out.append(QueueConfig(top, parent=f"missing{i}", guaranteed=cpu(draw(g))))
        elif kind == "cycle":
            n = draw(st.integers(1, 3))
            ring = [top if j == 0 else f"{top}.ring{j}" for j in range(n)]
            out += [
                QueueConfig(name, parent=ring[(j + 1) % n], guaranteed=cpu(draw(g)))
                for j, name in enumerate(ring)
            ]
        else:  # under a valid queue or on its own; its children need more than its limit
            parent = draw(st.sampled_from([None, *sorted(q.name for q in valid)]))
            limit = draw(g)
            out.append(QueueConfig(top, parent=parent, limit=Resources(cpu=limit * 1000, memory=limit * GIB)))
            greedy = cpu(limit + draw(st.integers(1, 4)))
            out.append(QueueConfig(f"{top}.greedy", parent=top, guaranteed=greedy))
        if draw(st.booleans()):
            out.append(QueueConfig(f"{top}.below", parent=top, guaranteed=cpu(draw(g))))
    return out


@st.composite
def busy_worlds(draw):
    queues = draw(queue_trees())
    leaves = sorted(n for n in {q.name for q in queues} if all(c.parent != n for c in queues))

    def workloads(prefix: str, names: list[str], n: int) -> list:
        return [
            wl(
                f"{prefix}{i:02d}",
                draw(st.sampled_from(names)),
                cores=draw(st.integers(1, 4)),
                prio=draw(st.integers(0, 3)),
                created=draw(st.integers(0, 20)) / 2,
                pods=draw(st.integers(1, 3)),
                gang=draw(st.booleans()),
                preemptible=draw(st.integers(0, 5)) > 0,
            )
            for i in range(n)
        ]

    pending = workloads("p", leaves, draw(st.integers(1, 25)))
    admitted = [AdmittedWorkload(w, 0.0) for w in workloads("a", leaves, draw(st.integers(0, 10)))]
    poison = draw(poison_queues(queues))
    poisoned = [q.name for q in poison] + ["nowhere"]
    bad_pending = workloads("x", poisoned, draw(st.integers(0, 6)))
    bad_admitted = [AdmittedWorkload(w, 0.0) for w in workloads("y", poisoned, draw(st.integers(0, 3)))]
    nodes = None
    if draw(st.booleans()):
        sizes = draw(st.lists(st.integers(2, 16), min_size=1, max_size=3))
        nodes = [
            NodeCapacity(f"n{i}", Resources(cpu=c * 1000, pods=8), Resources(cpu=c * 1000, pods=8))
            for i, c in enumerate(sizes)
        ]
    positions = draw(st.permutations(range(len(queues) + len(poison))))
    mixed = [([*queues, *poison])[i] for i in positions]  # poison anywhere in the list
    clean = Snapshot(10.0, queues, pending, admitted, nodes, draw(st.sampled_from([None, None, 4.0])), 3)
    dirty = Snapshot(
        10.0, mixed, [*bad_pending, *pending], [*admitted, *bad_admitted], nodes, clean.global_rate, 3
    )
    return clean, dirty, {q.name for q in poison}


@given(busy_worlds())
def test_poison_queues_leave_every_other_decision_unchanged(world):
    clean, dirty, poison = world
    s1, s2 = Scheduler(reserve_after=5.0), Scheduler(reserve_after=5.0)
    for step in range(3):  # a few cycles, applying admissions, so cross-cycle state is compared too
        a, b = s1.cycle(clean), s2.cycle(dirty)
        assert a.admit == b.admit and a.preempt == b.preempt and a.wake_at == b.wake_at
        assert a.queues == b.queues
        assert set(b.disabled) == poison
        assert {k: a.pending[k] for k in a.pending} == {
            w.key: b.pending[w.key] for w in clean.pending if w.key in b.pending
        }
        for w in dirty.pending:
            if w.key not in a.pending and w.key not in {x.key for x in a.admit}:
                assert w.queue in poison or w.queue == "nowhere"
                assert b.pending[w.key].reason.startswith(f"queue {w.queue} ")
        now = 10.0 + step + 1
        clean, dirty = _advance(clean, a, now), _advance(dirty, a, now)


def _advance(s: Snapshot, d, now: float) -> Snapshot:
    """The next snapshot: admissions applied, victims gone."""
    admitted = {x.key for x in d.admit}
    gone = {p.victim_key for p in d.preempt}
    run = [x for x in s.admitted if x.key not in gone]
    run += [AdmittedWorkload(w, now) for w in s.pending if w.key in admitted]
    pend = [w for w in s.pending if w.key not in admitted]
    return Snapshot(now, s.queues, pend, run, s.nodes, s.global_rate, s.global_burst)
