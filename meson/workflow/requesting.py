"""Stage 3 of a cycle: what needs admission — the pod manifests of each pending instance, and the
instances holding admitted pods."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from meson.api.template import MissingValue, render
from meson.workflow.children import child_manifest, child_name, depth_problem
from meson.workflow.compiled import has_outputs, memo_id, steps_outputs
from meson.workflow.instances import (
    _Inst,
)
from meson.workflow.pods import finish_spec, pod_manifest, pod_name, pod_request
from meson.workflow.types import (
    LIVE_POD_PHASES,
    InstanceRequest,
)


class Requesting:
    """Stage 3 of a cycle: what needs admission — the pod manifests of each pending instance, and the"""

    # ----------------------------------------------------------------------------------------- pods

    def pod_name(self, inst: _Inst, run: int, index: int) -> str:
        return pod_name(self.compiled.name, inst.id, run, index)

    def context(self, inst: _Inst) -> tuple[dict[str, Any], Any]:
        """(placeholder context, rendered-template cache key) of an instance."""
        info = inst.info
        item = info.items[inst.index] if info.items is not None and inst.index is not None else None
        steps: dict[str, Any] = {}
        key: Any = inst.id
        if info.reads_outputs or info.from_output or info.memoize:
            # Outputs (and items taken from them) change with a restart: they are part of the key.
            names = [n for n in info.upstream if has_outputs(self.compiled.by_name[n])]
            steps = steps_outputs(names, self.outputs)
            key = (inst.id, json.dumps([{n: self.outputs.get(n) for n in names}, item], sort_keys=True))
        context = {
            "params": self.compiled.params,
            "steps": steps,
            "item": item,
            "step": {"name": info.name, "index": inst.index or 0},
            "workflow": {
                "name": self.compiled.name,
                "namespace": self.compiled.namespace,
                "uid": self.compiled.uid,
            },
        }
        return context, key

    def memo_key(self, inst: _Inst) -> str | None:
        """The memo id of the instance's rendered memoize.key (None: it cannot be rendered; not memoized)."""
        assert inst.info.memoize is not None
        context, _ = self.context(inst)
        try:
            return memo_id(render(inst.info.memoize[0], context))
        except MissingValue:
            return None

    def rendered(self, inst: _Inst) -> tuple[dict[str, Any], dict[str, int]] | str:
        info = inst.info
        context, key = self.context(inst)
        hit = self.compiled.rendered.get(key)
        if hit is not None:
            return hit
        result: tuple[dict[str, Any], dict[str, int]] | str
        try:
            template = render(info.template, context)
            spec = finish_spec(template.get("spec") or {}, self.spec.priority_class_name)
            result = ({"metadata": template.get("metadata") or {}, "spec": spec}, pod_request(spec))
        except MissingValue as exc:
            result = f"template: no value for {{{{ {exc.args[0]} }}}}"
        except (ValueError, TypeError, AttributeError) as exc:
            result = f"template: {exc}"
        self.compiled.rendered[key] = result
        return result

    def manifests(self, inst: _Inst, run: int, attempt: int, indexes: Sequence[int]) -> list[dict] | None:
        rendered = self.rendered(inst)
        if isinstance(rendered, str):
            return None
        template = rendered[0]
        return [
            pod_manifest(
                name=self.pod_name(inst, run, i),
                workflow=self.compiled.name,
                step=inst.info.name,
                instance=inst.id,
                run=run,
                attempt=attempt,
                queue=self.spec.queue,
                template=template,
                priority_class_name=self.spec.priority_class_name,
            )
            for i in indexes
        ]

    def request_child(self, inst: _Inst, run: int) -> None:
        """A Pending sub-workflow instance: its child Workflow of ``run`` is to be created (or it fails:
        too deep, or its arguments cannot be rendered)."""
        sub = inst.info.sub
        assert sub is not None
        problem = depth_problem(self.compiled.depth)
        arguments: list[dict[str, Any]] = []
        if problem is None:
            context, _ = self.context(inst)
            try:
                arguments = [
                    {"name": a["name"], "value": render(a.get("value"), context)}
                    for a in sub.get("parameters") or []
                ]
            except MissingValue as exc:
                problem = f"workflowTemplateRef.parameters: no value for {{{{ {exc.args[0]} }}}}"
        if problem is not None:
            inst.phase = "Failed"
            inst.end = self.since_start(self.now)
            inst.message = problem
            self.event(True, "StepFailed", f"{inst.id}: {problem}")
            return
        name = child_name(self.compiled.name, inst.id, run)
        self.create_children.append(
            child_manifest(
                name=name,
                parent=self.compiled.name,
                step=inst.info.name,
                instance=inst.id,
                run=run,
                attempt=inst.attempts,
                depth=self.compiled.depth + 1,
                ref=sub,
                arguments=arguments,
            )
        )
        inst.message = f"creating sub-workflow {name}"

    def request(self, inst: _Inst, run: int, attempt: int, pods: tuple[dict, ...]) -> InstanceRequest:
        rendered = self.rendered(inst)
        info = inst.info
        return InstanceRequest(
            key=f"{self.compiled.namespace}/{self.compiled.name}/{inst.id}",
            instance=inst.id,
            step=info.name,
            index=inst.index,
            run=run,
            attempt=attempt,
            pod_count=info.parallelism,
            gang=info.parallelism > 1,
            pod_request=dict(rendered[1]) if not isinstance(rendered, str) else {},
            created=self.compiled.created + 1e-6 * (info.ordinal + (inst.index or 0)),
            pods=pods,
        )

    def requests(self) -> tuple[list[InstanceRequest], list[InstanceRequest]]:
        pending: list[InstanceRequest] = []
        admitted: list[InstanceRequest] = []
        suspended = self.spec.suspend
        for inst in self.all():
            live_run = inst.run if inst.phase == "Running" else 0
            live_attempt = inst.attempts if live_run else 0
            for o in self.pods_by_instance.get(inst.id, ()):
                if o.phase not in LIVE_POD_PHASES:
                    continue
                if not (inst.phase == "Running" and o.run == inst.run) and not o.deleting:
                    self.delete.add(o.name)
                if o.run > live_run or (o.run == live_run and o.attempt > live_attempt):
                    live_run, live_attempt = o.run, o.attempt
            if live_run and inst.info.sub is not None:
                self.children_live = True  # a child Workflow holds no admission: its own steps do
            elif live_run:
                admitted.append(self.request(inst, live_run, live_attempt, ()))
            if inst.phase != "Pending":
                continue
            if suspended:
                inst.message = "suspended"
                continue
            if inst.message and not inst.message.startswith("preempted"):
                inst.message = None  # queue reasons come from the runtime (with_queue_positions)
            if live_run:
                continue  # wait until the previous pods are gone
            run = inst.run + 1
            if inst.info.sub is not None:
                self.request_child(inst, run)
                continue
            pods = self.manifests(inst, run, inst.attempts, range(inst.info.parallelism))
            if pods is None:
                rendered = self.rendered(inst)
                inst.phase = "Failed"
                inst.end = self.since_start(self.now)
                inst.message = rendered if isinstance(rendered, str) else "cannot make the pods"
                self.event(True, "StepFailed", f"{inst.id}: {inst.message}")
                continue
            pending.append(self.request(inst, run, inst.attempts, tuple(pods)))
        return pending, admitted
