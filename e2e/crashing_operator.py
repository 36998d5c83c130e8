"""`meson operator` with one fault injected, for the crash-safety e2e test: the process exits abruptly
(status 137, like SIGKILL) right after creating its Nth pod, i.e. in the middle of an admission.

Test-only on purpose: production code carries no fault-injection hook.
Usage: python -m e2e.crashing_operator N operator [--kubeconfig ...]
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


if __name__ == "__main__":
    crash_after_creates(int(sys.argv[1]))
    sys.exit(cli.main(sys.argv[2:]))
