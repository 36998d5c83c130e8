"""Which queues are valid: a bad queue disables only itself and the queues below it.

One tenant's broken Queue must never stop admission for everyone, so the checks are per queue and
their reasons are written for the queue's owner:

* a duplicate name: every queue of that name ("queue name team-a is defined more than once");
* a caller-disabled queue (an object it could not read): the caller's reason;
* a missing parent: "parent team-x does not exist";
* a parent cycle: every queue on it ("parent chain team-a -> team-b -> team-a has a cycle");
* a limit below the guarantees the queue must honour (its entitlement, see ``quota``):
  "limit cpu 4 is below the guarantees it must honour (cpu 8)";
* and every queue below a disabled one: "ancestor team-a is disabled: <its reason>".

Limits are checked deepest first, against the entitlement of what is still valid below: a child
subtree disabled for its own limit no longer counts in its ancestors' guarantees, so they are not
disabled for it. The valid queues then form a forest that the scheduler uses exactly as if the
disabled queues did not exist: disabling a queue never changes a decision about an unrelated one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meson.core.model import QueueConfig
from meson.core.resources import ZERO, Resources


@dataclass(frozen=True, slots=True)
class QueueCheck:
    """``valid``: the queues to schedule (input order); ``disabled``: name -> reason (sorted)."""

    valid: list[QueueConfig]
    disabled: dict[str, str]


def check_queues(queues: Iterable[QueueConfig], disabled: Mapping[str, str] | None = None) -> QueueCheck:
    """Split ``queues`` into valid ones and disabled ones with a reason each.

    ``disabled`` names queues the caller already knows are broken (present in ``queues`` or not):
    they stay disabled with the caller's reason, and the queues below them inherit it.
    """
    queues = list(queues)
    external = dict(disabled or {})
    cause = _causes(queues, external)
    out = {n: (r if c == n else f"ancestor {c} is disabled: {r}") for n, (c, r) in cause.items()}
    for name, reason in external.items():
        out.setdefault(name, reason)
    return QueueCheck([q for q in queues if q.name not in cause], dict(sorted(out.items())))


def validate_queues(queues: Iterable[QueueConfig]) -> list[str]:
    """One error per queue with a problem of its own (empty = valid); the queues below such a
    queue are disabled too (see ``check_queues``) but are not errors themselves."""
    cause = _causes(list(queues), {})
    return [f"queue {n}: {r}" for n, (c, r) in sorted(cause.items()) if c == n]


def _causes(queues: list[QueueConfig], external: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Disabled queue -> (the queue whose problem disables it, that problem)."""
    by_name: dict[str, QueueConfig] = {}
    own: dict[str, str] = {}  # queue -> its own problem
    for q in queues:
        if q.name in by_name:
            own[q.name] = f"queue name {q.name} is defined more than once"
        by_name[q.name] = q
    for name, reason in external.items():
        if name in by_name:
            own.setdefault(name, reason)
    cause = _structure(by_name, own, external)
    _limits(by_name, cause)
    return cause


def _structure(
    by_name: dict[str, QueueConfig], own: dict[str, str], external: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Queue -> (queue whose problem it is, that problem), for missing parents, cycles and the
    queues below them (and below queues with a problem of their own in ``own``)."""
    cause: dict[str, tuple[str, str]] = {}
    ok: set[str] = set()
    for start in sorted(by_name):
        chain: list[str] = []  # start, its parent, ... up to the first settled queue
        on_chain: dict[str, int] = {}
        cur: str | None = start
        found: tuple[str, str] | None = None  # the problem the chain's queues inherit
        while cur is not None and cur not in ok and cur not in cause:
            if cur in on_chain:  # a cycle: its members are the chain from cur's first visit
                loop = chain[on_chain[cur] :]
                for i, member in enumerate(loop):
                    names = [*loop[i:], *loop[:i], member]
                    cause[member] = (member, f"parent chain {' -> '.join(names)} has a cycle")
                found = cause[cur]
                chain = chain[: on_chain[cur]]
                break
            on_chain[cur] = len(chain)
            chain.append(cur)
            if cur in own:
                found = (cur, own[cur])
                cause[cur] = found
                chain.pop()
                break
            parent = by_name[cur].parent
            if parent is not None and parent not in by_name:
                if parent in external:
                    found = (parent, external[parent])
                else:
                    found = cause[cur] = (cur, f"parent {parent} does not exist")
                    chain.pop()
                break
            cur = parent
        if found is None and cur is not None:
            found = cause.get(cur)  # reached a queue settled by an earlier walk
        for member in chain:
            if found is None:
                ok.add(member)
            else:
                cause[member] = found
    return cause


def _limits(by_name: dict[str, QueueConfig], cause: dict[str, tuple[str, str]]) -> None:
    """Disable (in ``cause``) every structurally valid queue whose limit is below the guarantees
    of the valid queues under it, with its subtree; deepest first."""
    children: dict[str, list[str]] = {n: [] for n in by_name if n not in cause}
    depth: dict[str, int] = {}
    for n in children:
        d, cur = 0, by_name[n].parent
        while cur is not None:
            d, cur = d + 1, by_name[cur].parent
        depth[n] = d
        if by_name[n].parent is not None:
            children[by_name[n].parent].append(n)  # type: ignore[index]
    roots = {n: _root(by_name, n) for n in children}
    named: dict[str, frozenset[str]] = {}
    for n, r in roots.items():
        named[r] = named.get(r, frozenset()) | by_name[n].quota_names
    entitlement: dict[str, Resources] = {}
    for n in sorted(children, key=lambda n: (-depth[n], n)):
        q = by_name[n]
        pooled = ZERO
        for c in children[n]:
            if c not in cause:
                pooled = pooled + entitlement[c]
        ent = entitlement[n] = q.guaranteed.max(pooled) if children[n] else q.guaranteed
        if q.limit is None:
            continue
        covered = q.listed if q.listed is not None else named[roots[n]]
        if any(ent.get(r, 0) > q.limit.get(r, 0) for r in covered):
            problem = f"limit {q.limit.describe()} is below the guarantees it must honour ({ent.describe()})"
            _disable_subtree(n, children, cause, (n, problem))


def _root(by_name: dict[str, QueueConfig], name: str) -> str:
    parent = by_name[name].parent
    while parent is not None:
        name, parent = parent, by_name[parent].parent
    return name


def _disable_subtree(
    name: str, children: dict[str, list[str]], cause: dict[str, tuple[str, str]], why: tuple[str, str]
) -> None:
    todo = [name]
    while todo:
        n = todo.pop()
        if n in cause:
            continue  # disabled for its own limit already, with its subtree: keep that reason
        cause[n] = why
        todo.extend(children[n])
