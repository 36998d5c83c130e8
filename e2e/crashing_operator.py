"""`meson operator` with one fault injected, for the crash-safety e2e test: the process exits abruptly
(status 137, like SIGKILL) right after creating its Nth pod, i.e. in the middle of an admission; or, with
``workflows:N``, right after creating its Nth Workflow (a sub-workflow's child, before the parent's status
says so).

Test-only on purpose: production code carries no fault-injection hook.
Usage: python -m e2e.crashing_operator N|workflows:N operator [--kubeconfig ...]
"""

from __future__ import annotations

import itertools
import os
import sys

from meson import cli
from meson.controllers.writer import Writer


def crash_after_creates(limit: int) -> None:
    create = Writer._create_pod
    created = itertools.count(1)

    def create_then_crash(self: Writer, namespace: str, body: dict) -> str | None:
        refused = create(self, namespace, body)
        if refused is None and next(created) >= limit:
            print(f"crashing_operator: exiting after {limit} pod creates", file=sys.stderr, flush=True)
            os._exit(137)
        return refused

    Writer._create_pod = create_then_crash  # type: ignore[method-assign]


def crash_after_workflow_creates(limit: int) -> None:
    create = Writer.create_workflow
    created = itertools.count(1)

    def create_then_crash(self: Writer, key: tuple[str, str], body: dict) -> None:
        create(self, key, body)
        if next(created) >= limit:
            print(f"crashing_operator: exiting after {limit} workflow creates", file=sys.stderr, flush=True)
            os._exit(137)

    Writer.create_workflow = create_then_crash  # type: ignore[method-assign]


if __name__ == "__main__":
    if sys.argv[1].startswith("workflows:"):
        crash_after_workflow_creates(int(sys.argv[1].removeprefix("workflows:")))
    else:
        crash_after_creates(int(sys.argv[1]))
    sys.exit(cli.main(sys.argv[2:]))
