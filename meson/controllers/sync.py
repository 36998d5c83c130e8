"""Semaphores across workflows and steps, derived from the view every cycle.

A semaphore is named per namespace. Workflows take it with ``spec.synchronization.semaphore``, step instances
with ``steps[].synchronization.semaphore`` (or ``onExit.synchronization``); both kinds of holder count
against the same limit, one each.

Holders. Level-triggered, so nothing is lost across an operator restart:

* a workflow holds its semaphore from its first admission until it finishes (it has an instance with a run
  in its status, a pod, or an admission recorded before its pods exist);
* a step instance (one foreach element, or the step; a gang is one instance) holds its step's semaphore from
  its first admission until it ends (Succeeded, Failed, Skipped, Omitted, Cached), retries included: it has
  a live pod or an admission recorded before its pods exist, or its status does not say it ended and either
  shows it launched and not rerun by a restart since (Running; Retrying; Pending for its next attempt or
  back in the queue after a preemption: it keeps its place) or is older than one of its pods (a status
  write not seen yet). A restart that reruns it starts it afresh: until it is admitted again it holds
  nothing.

Waiters. Each cycle, after planning, the requests of those that do not hold their semaphore and would be
offered to the queues contend for it (:meth:`Semaphores.gate`). They wait in line by unit (a workflow, or a
step instance), ordered by priority (highest first), then the workflow's creation time, then its name, then
step name and foreach index. The first ``limit - holders`` units may offer their requests; the rest are held
back before the core with a reason that says where they stand (it shows in their steps' messages). A request
of a workflow that waits for its own semaphore and of a step that waits for another goes only when both let
it. The limit is the smallest any unfinished workflow naming the semaphore declares (for itself or a step).

A limit may come from a ConfigMap key (``configMapKeyRef``), read from the view each cycle, so a changed value
applies at the next cycle. A workflow or step whose ConfigMap or key is missing, or whose value is not a
positive integer, is held back (not failed) with that reason, and takes its turn once the ConfigMap is fixed;
if it already holds the semaphore it keeps it.

Cost: a workflow naming no semaphore costs one dictionary look-up per cycle (what its spec declares is worked
out once per object); the holders among a workflow's step instances are worked out again only when its
object or its pods moved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from meson.api.workflow import MAX_FOREACH_ITEMS
from meson.workflow import InstanceRequest, PodObservation, parse_time
from meson.workflow.status import parse_ranges

__all__ = ["ConfigMapData", "Declared", "Semaphores", "declared", "holding_instances", "resolve_limit"]

Key = tuple[str, str]
Group = tuple[str, str]  # (namespace, semaphore name): one count
_FINISHED = ("Succeeded", "Failed")
#: Phases of a step instance that ended: it holds its step's semaphore no more (unless a pod of it runs).
_ENDED = frozenset({"Succeeded", "Failed", "Skipped", "Omitted", "Cached"})
#: Pod phases of a pod that may still run (a Gone tombstone, Succeeded and Failed do not).
_LIVE = frozenset({"Pending", "Running", "Unknown"})
_EXIT_STEP = "on-exit"  # ExitStep.name's default


#: What the view keeps of a ConfigMap's data (Store.on_config_map); None: a value too long to be a limit.
ConfigMapData = Mapping[str, str | None]


def resolve_limit(
    sem: Mapping[str, Any], namespace: str, config_maps: Mapping[Key, ConfigMapData]
) -> int | str:
    """A semaphore's limit, or why it cannot be read (its ConfigMap or key is missing, or not a positive
    integer)."""
    ref = sem.get("configMapKeyRef")
    if not isinstance(ref, Mapping):
        limit = sem.get("limit", 1)  # a workflow stored before limits could be omitted was defaulted to 1
        return limit if isinstance(limit, int) and limit >= 1 else 1
    name, key, cm_name = sem.get("name"), ref.get("key"), ref.get("name")
    data = config_maps.get((namespace, str(cm_name)))
    if data is None:
        return f"semaphore {name}: ConfigMap {cm_name} not found (it sets the limit)"
    if key not in data:
        return f"semaphore {name}: ConfigMap {cm_name} has no key {key} (it sets the limit)"
    value = data[key]
    text = (value or "").strip()
    if value is None or not text.isdecimal() or int(text) < 1:
        shown = "too long" if value is None else repr(value)
        return f"semaphore {name}: ConfigMap {cm_name} key {key} is {shown}, not a positive integer"
    return int(text)


def _semaphore(owner: Any) -> Mapping[str, Any] | None:
    """The semaphore of a spec or a step (``synchronization.semaphore``), when it names one."""
    sync = owner.get("synchronization") if isinstance(owner, Mapping) else None
    sem = sync.get("semaphore") if isinstance(sync, Mapping) else None
    return sem if isinstance(sem, Mapping) and sem.get("name") else None


class Declared(NamedTuple):
    """The semaphores a workflow's spec names: its own, and its steps' by step name (the exit step's too)."""

    workflow: Mapping[str, Any] | None
    steps: Mapping[str, Mapping[str, Any]]


def declared(spec: Mapping[str, Any]) -> Declared | None:
    """What ``spec`` declares (None: no semaphore at all). A sub-workflow step's semaphore is ignored (the
    webhook refuses it: the step has no pod to hold it), and so is a step's semaphore of the same name as
    the workflow's own (the webhook refuses it too: the workflow holds it already, for the step as well)."""
    own = _semaphore(spec)
    steps: dict[str, Mapping[str, Any]] = {}
    exit_step = spec.get("onExit")
    candidates = [*(spec.get("steps") or []), *([exit_step] if isinstance(exit_step, Mapping) else [])]
    for step in candidates:
        if not isinstance(step, Mapping) or "synchronization" not in step or step.get("workflowTemplateRef"):
            continue
        sem = _semaphore(step)
        if sem is not None and (own is None or sem["name"] != own["name"]):
            name = step.get("name") or (_EXIT_STEP if step is exit_step else None)
            if isinstance(name, str):
                steps[name] = sem
    return Declared(own, steps) if own is not None or steps else None


def _started(wf: Mapping[str, Any]) -> bool:
    return any(isinstance(s, Mapping) and s.get("run") for s in (wf.get("status") or {}).get("steps") or [])


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _step_of(instance: str, steps: Collection[str]) -> str | None:
    """The step of ``steps`` an instance id (``NAME`` or ``NAME-INDEX``) belongs to, if any."""
    if instance in steps:
        return instance
    name, _, index = instance.rpartition("-")
    return name if index.isdigit() and name in steps else None


def holding_instances(
    status: Mapping[str, Any],
    steps: Collection[str],
    pods: Iterable[PodObservation],
    admitted: Collection[str] = (),
) -> dict[str, str]:
    """The instances of ``steps`` (step names) holding their step's semaphore, as instance -> step, from a
    workflow's status, its pods and its admissions recorded before their pods exist (``admitted``: instance
    ids). See the module's docstring for the rule."""
    # instance -> (step, ended, attempted, run) as the status records it (an instance entry wins over a range)
    recorded: dict[str, tuple[str, bool, bool, int]] = {}
    for entry in status.get("steps") or []:
        step = entry.get("name") if isinstance(entry, Mapping) else None
        if step not in steps:
            continue
        phase, run = entry.get("phase"), _int(entry.get("run"))
        # Pending with a run: launched before, and back in line after a preemption (a reason) or to start
        # its next attempt (attempts beyond 1), not rerun by a restart (reason cleared, attempts afresh).
        again = (
            phase == "Pending" and run > 0 and (_int(entry.get("attempts")) > 1 or bool(entry.get("reason")))
        )
        state = (step, phase in _ENDED, again or phase in ("Running", "Retrying"), run)
        if "indexes" not in entry:
            recorded[step if entry.get("index") is None else f"{step}-{entry['index']}"] = state
            continue
        for i in parse_ranges(entry["indexes"], MAX_FOREACH_ITEMS):
            recorded.setdefault(f"{step}-{i}", state)
    out = {
        instance: step
        for instance, (step, ended, attempted, _) in recorded.items()
        if attempted and not ended
    }
    for pod in pods:
        _, ended, _, run = recorded.get(pod.instance, ("", False, False, 0))
        if pod.instance not in out and (pod.phase in _LIVE or (not ended and pod.run > run)):
            step = _step_of(pod.instance, steps)
            if step is not None:
                out[pod.instance] = step
    for instance in admitted:
        step = _step_of(instance, steps)
        if step is not None:
            out.setdefault(instance, step)
    return out


@dataclass(slots=True)
class _Member:
    """An unfinished workflow naming a semaphore, as this cycle sees it: what its requests contend for."""

    order: tuple  # (-priority, creation time, name): its place among the waiters
    workflow: tuple[Group, int | str] | None  # its own semaphore while it does not hold it (group, limit)
    steps: dict[str, tuple[Group, int | str]] = field(default_factory=dict)  # step -> (group, limit)
    holding: Collection[str] = ()  # its step instances holding their step's semaphore


# A contending request's claims: (group, unit label, limit or why it cannot be read, place in line).
_Claim = tuple[Group, str, int | str, tuple]


class Semaphores:
    def __init__(self) -> None:
        self._declared: dict[Key, tuple[Any, Declared | None]] = {}  # by workflow: (its spec, what it names)
        self._naming: set[Key] = set()  # the workflows whose spec names a semaphore
        self._holding: dict[Key, tuple[Any, int, dict[str, str]]] = {}  # (object, pods version, holders)
        self._members: dict[Key, _Member] = {}
        self._holders: dict[Group, list[str]] = {}
        self._limits: dict[Group, int] = {}
        self._claims: dict[str, list[_Claim]] = {}  # this cycle's contending requests, by request key

    def refresh(
        self,
        workflows: Mapping[Key, Mapping[str, Any]],
        has_pods: Callable[[Key], bool],
        reserved: Collection[str],
        priority_of: Callable[[str | None], int],
        config_maps: Mapping[Key, ConfigMapData] | None = None,
        pods_of: Callable[[Key], Iterable[PodObservation]] = lambda key: (),
        pods_version: Callable[[Key], int] | None = None,
        changed: Collection[Key] | None = None,
    ) -> None:
        """Work out this cycle's holders of every semaphore, and what the requests of the others contend for
        (``reserved``: request keys ``ns/workflow/instance`` admitted whose pods are not seen yet;
        ``config_maps``: the data of the ConfigMaps by (namespace, name), for limits given by
        ``configMapKeyRef``; ``pods_of``: a workflow's pods, ``pods_version``: a number that moves with
        them, None when unknown; ``changed``: the workflows whose object moved since the last call, None
        when unknown: only those are read again for what they name)."""
        config_maps = config_maps or {}
        holders: dict[Group, list[str]] = defaultdict(list)
        limits: dict[Group, int] = {}
        members: dict[Key, _Member] = {}
        admitted: dict[Key, set[str]] | None = None
        known = self._declared

        def limit_of(group: Group, sem: Mapping[str, Any]) -> int | str:
            limit = resolve_limit(sem, group[0], config_maps)
            if isinstance(limit, int):
                limits[group] = min(limit, limits.get(group, limit))
            return limit

        if changed is None:
            candidates: Iterable[Key] = workflows
        else:
            for key in changed:
                if key not in workflows:
                    known.pop(key, None)
                    self._holding.pop(key, None)
                    self._naming.discard(key)
            candidates = [*self._naming, *(k for k in changed if k in workflows and k not in self._naming)]
        for key in candidates:
            wf = workflows[key]
            spec = wf.get("spec")
            names = known.get(key)
            if names is None or names[0] is not spec:  # once per object: most workflows name none
                names = known[key] = (spec, declared(spec) if isinstance(spec, Mapping) else None)
                if names[1] is None:
                    self._naming.discard(key)
                else:
                    self._naming.add(key)
            d = names[1]
            if d is None or (wf.get("status") or {}).get("phase") in _FINISHED:
                continue
            if admitted is None:
                admitted = defaultdict(set)
                for request_key in reserved:
                    ns, _, rest = request_key.partition("/")
                    name, _, instance = rest.partition("/")
                    admitted[(ns, name)].add(instance)
            meta = wf.get("metadata") or {}
            order = (
                -priority_of(spec.get("priorityClassName")),
                parse_time(meta.get("creationTimestamp")) or 0.0,
                key[1],
            )
            member = _Member(order, None)
            if d.workflow is not None:
                group = (key[0], str(d.workflow["name"]))
                limit = limit_of(group, d.workflow)
                if _started(wf) or has_pods(key) or key in admitted:
                    holders[group].append(key[1])
                else:
                    member.workflow = (group, limit)
            if d.steps:
                member.steps = {
                    step: (group, limit_of(group, sem))
                    for step, sem in d.steps.items()
                    for group in [(key[0], str(sem["name"]))]
                }
                holding = self._holding_of(key, wf, d, pods_of, pods_version, admitted.get(key, ()))
                member.holding = holding
                for instance, step in holding.items():
                    holders[member.steps[step][0]].append(f"{key[1]}/{instance}")
            if member.workflow is not None or member.steps:
                members[key] = member
        if len(known) > len(workflows):  # workflows deleted: forget them
            for gone in [k for k in known if k not in workflows]:
                del known[gone]
                self._holding.pop(gone, None)
                self._naming.discard(gone)
        self._members, self._holders, self._limits = members, holders, limits
        self._claims = {}

    def _holding_of(
        self,
        key: Key,
        wf: Mapping[str, Any],
        d: Declared,
        pods_of: Callable[[Key], Iterable[PodObservation]],
        pods_version: Callable[[Key], int] | None,
        admitted: Collection[str],
    ) -> dict[str, str]:
        """The workflow's step instances holding their step's semaphore (instance -> step), worked out from
        its status and pods again only when either moved; its admissions in flight added every cycle."""
        version = pods_version(key) if pods_version is not None else None
        cached = self._holding.get(key)
        if version is not None and cached is not None and cached[0] is wf and cached[1] == version:
            holding = cached[2]
        else:
            holding = holding_instances(wf.get("status") or {}, d.steps, pods_of(key))
            if version is not None:
                self._holding[key] = (wf, version, holding)
        return holding_instances({}, d.steps, (), admitted) | holding if admitted else holding

    def gate(self, key: Key) -> Callable[[InstanceRequest], bool] | None:
        """For a workflow whose requests may contend for a semaphore this cycle: the function that tells,
        for a request that would be offered to the queues, whether it waits for :meth:`decide` (and records
        it). None for the others."""
        member = self._members.get(key)
        return None if member is None else partial(self._contend, key[1], member)

    def _contend(self, workflow: str, member: _Member, req: InstanceRequest) -> bool:
        claims: list[_Claim] = []
        if member.workflow is not None:
            group, limit = member.workflow
            claims.append((group, workflow, limit, (*member.order, "", -1)))
        step = member.steps.get(req.step)
        if step is not None and req.instance not in member.holding:
            place = (*member.order, req.step, -1 if req.index is None else req.index)
            claims.append((step[0], f"{workflow}/{req.instance}", step[1], place))
        if claims:
            self._claims[req.key] = claims
        return bool(claims)

    def decide(self) -> dict[str, str | None]:
        """This cycle's verdict on each request that contends (see :meth:`gate`): None when it may be
        offered to the queues, else why it waits."""
        lines: dict[Group, dict[str, tuple]] = defaultdict(dict)  # group -> unit -> its place
        for claims in self._claims.values():
            for group, unit, limit, place in claims:
                if isinstance(limit, int):
                    lines[group][unit] = place
        waits: dict[tuple[Group, str], str] = {}
        for group, line in lines.items():
            holders = sorted(self._holders.get(group, ()))
            limit = self._limits[group]  # a unit in line has a limit, so the group has one
            free = limit - len(holders)
            if len(line) <= free:
                continue
            held_by = ", ".join(holders[:3]) + (", ..." if len(holders) > 3 else "")
            for position, unit in enumerate(sorted(line, key=line.__getitem__), 1):
                if position > free:
                    waits[(group, unit)] = (
                        f"waiting for semaphore {group[1]}: {len(holders)}/{limit} held"
                        + (f" by {held_by}" if holders else "")
                        + f"; {position - max(free, 0)} in line"
                    )
        return {
            request_key: next(
                (
                    limit if isinstance(limit, str) else waits[(group, unit)]
                    for group, unit, limit, _ in claims
                    if isinstance(limit, str) or (group, unit) in waits
                ),
                None,
            )
            for request_key, claims in self._claims.items()
        }
