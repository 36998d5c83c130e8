"""Sub-workflows in the scheduling loop: the child Workflows a plan asks for are created, and those it
stops are given their ``spec.shutdown`` (:mod:`meson.workflow.children` says when).

A child has a deterministic name and its parent as controller owner (deleting the parent deletes it), so a
create repeated after a crash, or while the view has not seen the child yet, is an AlreadyExists: done.
A create the API server refuses (the webhook: the template is missing, say) is retried with backoff, and
the step says why meanwhile (like a refused pod create), so the step neither fails on a passing refusal nor
hides a lasting one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meson.adapters import kube
from meson.controllers import faults
from meson.controllers.inflight import Write
from meson.controllers.store import Key, Store
from meson.controllers.writer import Writer, owner_reference
from meson.workflow import LABEL_INSTANCE, Plan

log = logging.getLogger("meson.subworkflows")

# A refused child create is retried after this backoff (doubling per refusal, capped).
REFUSAL_BACKOFF = (2.0, 60.0)


@dataclass
class _Refusal:
    message: str
    count: int
    until: float


class SubWorkflows:
    def __init__(self, store: Store, writer: Writer, busy: Callable[[Any], bool]) -> None:
        self.store = store
        self.writer = writer
        self._busy = busy  # whether a write of this ident is in flight
        self._refused: dict[Key, _Refusal] = {}  # by child (namespace, name)
        self._stopped: dict[Key, str] = {}  # shutdowns written, until the child's own event shows them

    def writes(self, key: Key, plan: Plan, now: float, wakes: list[float]) -> list[Write]:
        """Creates of the children ``plan`` asks for and not yet seen, and its shutdowns."""
        parent = self.store.workflows.get(key)
        if parent is None:
            return []
        out: list[Write] = []
        for manifest in plan.create_workflows:
            child = (key[0], manifest["metadata"]["name"])
            if child in self.store.workflows or self._busy(("child", child)):
                continue
            refusal = self._refused.get(child)
            if refusal is not None and now < refusal.until:
                wakes.append(refusal.until)
                continue
            out.append((("child", child), self._create(child, parent, manifest, now)))
        for name, mode in plan.shutdown_workflows.items():
            child = (key[0], name)
            if self._stopped.get(child) != mode and not self._busy(("child", child)):
                out.append((("child", child), self._shutdown(child, mode)))
        return out

    def held(self, key: Key, plan: Plan) -> dict[str, tuple[int, str]]:
        """Why the children of ``plan`` that the API server refused are not there: instance -> (0, reason)."""
        out: dict[str, tuple[int, str]] = {}
        for manifest in plan.create_workflows:
            refusal = self._refused.get((key[0], manifest["metadata"]["name"]))
            if refusal is not None:
                instance = manifest["metadata"]["labels"][LABEL_INSTANCE]
                out[instance] = (
                    0,
                    f"sub-workflow creation refused: {refusal.message} (retried with backoff)",
                )
        return out

    async def _create(self, child: Key, parent: dict, manifest: dict, now: float) -> None:
        meta = manifest["metadata"]
        body = {
            **manifest,
            "metadata": {
                **meta,
                "namespace": child[0],
                "ownerReferences": [owner_reference("Workflow", parent)],
            },
        }
        try:
            await self.writer.run(self.writer.create_workflow, child, body)
        except kube.ApiException as exc:
            previous = self._refused.get(child)
            count = previous.count + 1 if previous else 1
            backoff = min(REFUSAL_BACKOFF[1], REFUSAL_BACKOFF[0] * 2 ** (count - 1))
            message = faults.describe(exc)[: faults.MESSAGE_MAX]
            self._refused[child] = _Refusal(message, count, now + backoff)
            log.warning("sub-workflow %s/%s refused: %s", child[0], child[1], message)
            if count == 1:
                self.writer.event(parent, "Warning", "SubWorkflowRefused", f"{child[1]}: {message}")
            self.store.wake.set()
            return
        self._refused.pop(child, None)

    async def _shutdown(self, child: Key, mode: str) -> None:
        patch = self.writer.clients.custom.patch_namespaced_custom_object
        body = {"spec": {"shutdown": mode}}
        try:
            await self.writer.run(
                kube.call, patch, kube.GROUP, kube.VERSION, child[0], "workflows", child[1], body
            )
        except kube.ApiException as exc:  # gone: nothing to stop; else the next plan asks again
            if exc.status != 404:
                log.warning(
                    "sub-workflow %s/%s: shutdown %s failed: %s", child[0], child[1], mode, exc.reason
                )
            return
        self._stopped[child] = mode

    def forget(self) -> None:
        """Drop what is known of children that exist now (refusals) or are gone (shutdowns written)."""
        for child in [c for c in self._refused if c in self.store.workflows]:
            del self._refused[child]
        for child in [c for c in self._stopped if c not in self.store.workflows]:
            del self._stopped[child]
