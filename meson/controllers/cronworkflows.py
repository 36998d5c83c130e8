"""CronWorkflows in the scheduling loop: ask the cron planner what to do, then do it.

The planner (:func:`meson.workflow.cron.plan_cron`) is pure; this module only gathers its inputs from
the view (the children a CronWorkflow made, recognised by their label) and turns its plan into writes:
child Workflows created or deleted, the status, and the planner's events (StartedRun, SkippedRun,
MissedSchedule...), posted once with the status write that records the decision.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from meson.api.validation import invalid_condition
from meson.controllers import faults, translate
from meson.controllers.checks import SpecChecks
from meson.controllers.faults import Faults
from meson.controllers.inflight import Write
from meson.controllers.store import Key, Store
from meson.controllers.writer import Writer, merge_patch, owner_reference
from meson.workflow.cron import (
    LABEL_BACKFILL,
    LABEL_CRONWORKFLOW,
    SCHEDULED_TIME_ANNOTATION,
    ChildWorkflow,
    CronPlan,
    plan_cron,
)

KIND = "CronWorkflow"


class CronWorkflows:
    def __init__(self, store: Store, writer: Writer, checks: SpecChecks, faults: Faults) -> None:
        self.store = store
        self.writer = writer
        self.checks = checks
        self.faults = faults

    def writes(self, now: float, wakes: list[float]) -> list[Write]:
        """This cycle's writes for every CronWorkflow; one that cannot be planned is skipped alone."""
        writes: list[Write] = []
        if not self.store.cronworkflows:
            return writes  # finding the children of crons walks every workflow: only when there are some
        children = self._children(now)
        for key, cron in list(self.store.cronworkflows.items()):
            self.faults.guard(
                KIND, key, "plan", self._plan, key, cron, children.get(key, []), now, wakes, writes
            )
        return writes

    def _children(self, now: float) -> dict[Key, list[ChildWorkflow]]:
        children: dict[Key, list[ChildWorkflow]] = defaultdict(list)
        for (ns, name), wf in self.store.workflows.items():
            meta = wf["metadata"]
            cron = (meta.get("labels") or {}).get(LABEL_CRONWORKFLOW)
            if not cron:
                continue
            st = wf.get("status") or {}
            scheduled = translate.epoch((meta.get("annotations") or {}).get(SCHEDULED_TIME_ANNOTATION))
            children[(ns, cron)].append(
                ChildWorkflow(
                    name=name,
                    scheduled=scheduled or translate.epoch(meta.get("creationTimestamp")) or now,
                    phase=st.get("phase") or "Pending",
                    finished=translate.epoch(st.get("finishedAt")),
                    backfill=(meta.get("labels") or {}).get(LABEL_BACKFILL) == "true",
                )
            )
        return children

    def _plan(
        self,
        key: Key,
        cron: dict,
        children: list[ChildWorkflow],
        now: float,
        wakes: list[float],
        writes: list,
    ) -> None:
        old = cron.get("status") or {}
        problems = self.checks.problems(KIND, cron)
        if problems:
            refused = invalid_condition(problems, generation=cron["metadata"].get("generation"))
            status = faults.with_condition(old, refused)
            if status != old:
                self.writer.event(cron, "Warning", "InvalidSpec", "; ".join(problems))
                writes.append(((KIND, key), self._patch_status(key, status, old)))
            return
        cp = plan_cron(cron, now, children)
        if cp.wake_at is not None:
            wakes.append(cp.wake_at)
        if cp.create or cp.delete or cp.status != old:
            writes.append(((KIND, key), self._apply(key, cron, cp, old)))

    async def _apply(self, key: Key, cron: dict, cp: CronPlan, old: dict) -> None:
        """Deletions and creations first, then the status that records them: a run whose Workflow could
        not be created is not marked scheduled, so the next cycle tries it again."""
        owner = owner_reference(KIND, cron)
        deletes = [self.writer.delete_workflow((key[0], name)) for name in cp.delete]
        creates = [
            self.writer.run(
                self.writer.create_workflow,
                key,
                {
                    **manifest,
                    "metadata": {**manifest["metadata"], "namespace": key[0], "ownerReferences": [owner]},
                },
            )
            for _name, manifest in cp.create
        ]
        outcomes = await asyncio.gather(*deletes, *creates, return_exceptions=True)
        failed = next((o for o in outcomes if isinstance(o, Exception)), None)
        if failed is not None:
            self.faults.record(KIND, key, "write", failed)
            return
        if cp.status != old:
            await self._patch_status(key, cp.status, old, cron, cp.events)

    async def _patch_status(
        self, key: Key, status: dict, old: dict, cron: dict | None = None, evs: list | None = None
    ) -> None:
        patch = self.writer.patch_status("cronworkflows", key[0], key[1], merge_patch(status, old))
        await self.faults.guard_write(KIND, key, patch)
        if cron is not None and evs and self.faults.of(KIND, key) is None:
            for ev in evs:
                self.writer.event(cron, ev.type, ev.reason, ev.message)
