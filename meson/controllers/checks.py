"""The checks the admission webhook makes, made again by the controllers, once per object generation.

The webhook may be off (the chart's default), and the API server then accepts what only Meson can check
(a dependency cycle, a cron schedule, a queue's parent chain) and pod templates it never validated. So
every new generation is checked here before it is acted on: the pure checks of
:mod:`meson.api.validation`, and for workflows a server-side dry-run create of each distinct pod template
(strict field validation), made in the background before any pod of that generation is created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from meson.adapters import dryrun
from meson.api.validation import validate
from meson.controllers.writer import Writer

log = logging.getLogger("meson.checks")
CheckKey = tuple[str, str, int]  # (kind, uid, generation)


def _key(kind: str, obj: dict) -> CheckKey:
    meta = obj["metadata"]
    return (kind, meta.get("uid", ""), int(meta.get("generation") or 0))


class SpecChecks:
    def __init__(self, writer: Writer, wake: Callable[[], None]) -> None:
        self._writer = writer
        self._wake = wake
        self._found: dict[CheckKey, list[str] | None] = {}  # None: the dry run is under way
        self._dry_run_pod = dryrun.VerdictCache(
            lambda ns, pod: dryrun.pod_verdict(writer.clients.api, ns, pod)
        )

    def problems(self, kind: str, obj: dict) -> list[str]:
        """The pure checks' messages for ``obj`` (empty: valid)."""
        key = _key(kind, obj)
        if key not in self._found:
            self._found[key] = validate(kind, obj)
        return self._found[key] or []

    def workflow_problems(self, wf: dict) -> list[str] | None:
        """A workflow's problems (empty: none), or None while its pod templates are being dry-run."""
        key = _key("Workflow", wf)
        if key in self._found:
            return self._found[key]
        problems = validate("Workflow", wf)
        if problems or (wf.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self._found[key] = problems
            return problems
        self._found[key] = None
        self._writer.submit(self._dry_run, key, wf)
        return None

    def _dry_run(self, key: CheckKey, wf: dict) -> None:
        """In a worker thread: dry-run the templates, then hand the verdict to the loop's thread."""
        meta = wf["metadata"]
        try:
            found = dryrun.dry_run_pods("Workflow", wf, meta.get("namespace"), self._dry_run_pod)
        except Exception:  # an unreachable server says nothing about the template
            log.exception(
                "pod dry run of %s/%s failed; admitting it unchecked", meta.get("namespace"), meta["name"]
            )
            found = []
        self._writer.in_loop(self._done, key, found)

    def _done(self, key: CheckKey, problems: list[str]) -> None:
        self._found[key] = problems
        self._wake()

    def forget(self, live: set[CheckKey]) -> None:
        for key in [k for k in self._found if k not in live]:
            del self._found[key]

    @staticmethod
    def key(kind: str, obj: dict) -> CheckKey:
        return _key(kind, obj)
