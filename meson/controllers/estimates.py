"""Per-request scheduling policy read from the objects: runtime estimates and minimum runtimes.

The rule is the core's (``meson.core.estimate``); this module only finds its inputs: a step's (or stream
job's) ``expectedDurationSeconds`` and ``preemption.minRuntimeSeconds``, and the runtimes of finished
pods, learned per step within a *scope*: the CronWorkflow a workflow was made by, else its
``generateName`` (copies made with ``kubectl create``), else the workflow itself (its reruns and
foreach items).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from meson.core.estimate import Estimate, RuntimeHistory
from meson.workflow import LABEL_CRONWORKFLOW, InstanceRequest, PodObservation

Key = tuple[str, str]
_INDEXED = re.compile(r"^(.*)-([0-9]+)$")


def scope(namespace: str, wf: Mapping[str, Any]) -> str:
    meta = wf.get("metadata") or {}
    cron = (meta.get("labels") or {}).get(LABEL_CRONWORKFLOW)
    if cron:
        return f"{namespace}/cron/{cron}"
    if meta.get("generateName"):
        return f"{namespace}/generated/{meta['generateName']}"
    return f"{namespace}/workflow/{meta.get('name', '')}"


class Policies:
    """Estimates and minimum runtimes of the requests offered to the core (see the module docstring)."""

    def __init__(self, store: Any) -> None:
        self.store = store  # the view: its workflows and streamjobs by (namespace, name)
        self.history = RuntimeHistory()
        self._steps: dict[int, tuple[dict, dict[str, dict]]] = {}  # id(workflow) -> (it, its steps)

    def _steps_of(self, wf: dict) -> dict[str, dict]:
        known = self._steps.get(id(wf))
        if known is not None and known[0] is wf:
            return known[1]
        spec = wf.get("spec") or {}
        steps = {s.get("name", ""): s for s in spec.get("steps") or []}
        if spec.get("onExit"):
            steps[spec["onExit"].get("name", "on-exit")] = spec["onExit"]
        if len(self._steps) > 4096:
            self._steps.clear()
        self._steps[id(wf)] = (wf, steps)
        return steps

    def of(self, req: InstanceRequest) -> tuple[Estimate, float]:
        """The request's runtime estimate and minimum runtime before preemption."""
        namespace, owner = req.key.split("/", 2)[:2]
        wf = self.store.workflows.get((namespace, owner))
        if wf is not None:
            step = self._steps_of(wf).get(req.step) or {}
            least = float((step.get("preemption") or {}).get("minRuntimeSeconds") or 0)
            declared = step.get("expectedDurationSeconds")
            return self.history.estimate(scope(namespace, wf), req.step, declared), least
        job = self.store.streamjobs.get((namespace, owner)) or {}
        declared = (job.get("spec") or {}).get("expectedDurationSeconds")
        return self.history.estimate(f"{namespace}/streamjob/{owner}", "", declared), 0.0

    def learn(self, key: Key, wf: dict, observations: Iterable[PodObservation]) -> None:
        """Record the runtimes of the workflow's succeeded pods (each pod once)."""
        steps = None
        where = None
        for o in observations:
            if o.phase != "Succeeded" or o.started is None or o.finished is None:
                continue
            if steps is None:
                steps = self._steps_of(wf)
                where = scope(key[0], wf)
            step = o.instance if o.instance in steps else _step_of_item(o.instance, steps)
            if step is not None and where is not None:
                self.history.record(where, step, o.finished - o.started, f"{key[0]}/{o.name}/{o.created}")


def _step_of_item(instance: str, steps: Mapping[str, Any]) -> str | None:
    """The step of a foreach item's instance name (``transform-3`` -> ``transform``)."""
    m = _INDEXED.match(instance)
    return m.group(1) if m and m.group(1) in steps else None
