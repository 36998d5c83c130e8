"""WorkflowTemplates and ClusterWorkflowTemplates as watched, and the one write that makes a Workflow from
its template (:mod:`meson.workflow.templates` says how): a spec patch with the resourceVersion read, so a
concurrent edit is a 409 and the next cycle resolves again from the fresh object."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from meson.adapters import kube
from meson.controllers.faults import Faults
from meson.controllers.inflight import Write
from meson.controllers.store import Key
from meson.controllers.writer import Writer
from meson.workflow import refused_status
from meson.workflow.templates import resolve_template, unresolved_ref

__all__ = ["Templates", "template_problem"]

log = logging.getLogger("meson.templates")


def template_problem(ref: Mapping[str, Any], namespace: str, found: bool) -> str | None:
    """The message for a workflowTemplateRef whose template is missing (None when found)."""
    if found:
        return None
    if ref.get("clusterScope"):
        return f"spec.workflowTemplateRef: ClusterWorkflowTemplate {ref.get('name')!r} not found"
    return (
        f"spec.workflowTemplateRef: WorkflowTemplate {ref.get('name')!r} not found in namespace {namespace!r}"
    )


class Templates:
    """The templates of the cluster (fed by watch events, like the store) and the resolution writes."""

    def __init__(self) -> None:
        self.namespaced: dict[Key, dict] = {}
        self.cluster: dict[str, dict] = {}
        self._resolving: set[Key] = set()

    def on_workflowtemplate(self, kind: str, obj: dict) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace") or "default", meta["name"])
        if kind == "DELETED":
            self.namespaced.pop(key, None)
        else:
            self.namespaced[key] = obj

    def on_clusterworkflowtemplate(self, kind: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.cluster.pop(name, None)
        else:
            self.cluster[name] = obj

    def find(self, namespace: str, ref: Mapping[str, Any]) -> dict | None:
        name = str(ref.get("name") or "")
        return self.cluster.get(name) if ref.get("clusterScope") else self.namespaced.get((namespace, name))

    def resolution(self, key: Key, wf: dict, writer: Writer, faults: Faults, now: float) -> Write | None:
        """The write that makes ``wf`` from its template (or refuses it when the template is missing);
        None when there is nothing to do or a resolution of it is in flight."""
        ref = unresolved_ref(wf.get("spec") or {})
        if ref is None or key in self._resolving:
            return None
        template = self.find(key[0], ref)
        if template is None:
            problem = template_problem(ref, key[0], False)
            status = refused_status(wf, [problem or ""], now, wf["metadata"].get("generation"))
            if status == (wf.get("status") or {}):
                return None
            return ("Workflow", key), self._refuse(key, status, writer)
        spec = resolve_template(wf["spec"], template.get("spec") or {})
        self._resolving.add(key)
        return ("Workflow", key), self._patch(key, wf, spec, writer, faults, now)

    async def _patch(
        self, key: Key, wf: dict, spec: dict, writer: Writer, faults: Faults, now: float
    ) -> None:
        body = {"metadata": {"resourceVersion": wf["metadata"].get("resourceVersion")}, "spec": spec}
        patch = writer.clients.custom.patch_namespaced_custom_object
        try:
            await writer.run(kube.call, patch, kube.GROUP, kube.VERSION, key[0], "workflows", key[1], body)
        except kube.ApiException as exc:
            if exc.status == 422:  # the webhook refused the resolved spec: say why on the workflow
                status = refused_status(wf, [f"from its template: {exc.reason}: {exc.body}"[:900]], now)
                await self._refuse(key, status, writer)
            elif exc.status not in (404, 409):  # gone, or changed meanwhile (the next cycle resolves again)
                faults.record("Workflow", key, "write", exc)
        finally:
            self._resolving.discard(key)

    @staticmethod
    async def _refuse(key: Key, status: dict, writer: Writer) -> None:
        try:
            await writer.patch_status("workflows", key[0], key[1], status)
        except kube.ApiException as exc:
            log.warning("workflow %s/%s: could not record its refusal: %s", key[0], key[1], exc.reason)
