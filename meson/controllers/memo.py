"""The memoization cache of a namespace, read from the view (no API call, nothing to keep in sync).

Where it lives: in the status of the workflows that ran the memoized steps. A memoized step that succeeds
(or is Cached) records ``status.memo[STEP] = {key, at}`` (the SHA-256 id of its rendered key, and when the
run whose result it is ended) next to its result in ``status.outputs``. A later workflow's memoized step
looks its key up among the workflows of its namespace and reuses the newest result within maxAgeSeconds.

So the cache is bounded by design (one record per memoized step of each existing workflow: at most 150 per
workflow, the status budget counts them), lives as long as those workflows (``ttlSecondsAfterFinished``,
a CronWorkflow's history limits; delete a workflow to forget its entries) and survives operator restarts
(it is in the API). The namespace is the trust boundary: whoever can write a workflow's status in it can
plant a result, as they could run a workflow that produces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meson.workflow import parse_time
from meson.workflow.types import MemoLookup

__all__ = ["memo_index", "memo_lookup"]


def memo_index(
    workflows: Mapping[tuple[str, str], Mapping[str, Any]], namespace: str
) -> dict[str, tuple[str, float]]:
    """Memo id -> (result, epoch it ended) of the newest success of each key in ``namespace``."""
    index: dict[str, tuple[str, float]] = {}
    for (ns, _), wf in workflows.items():
        if ns != namespace:
            continue
        status = wf.get("status") or {}
        records = status.get("memo")
        if not isinstance(records, Mapping):
            continue
        outputs = status.get("outputs") if isinstance(status.get("outputs"), Mapping) else {}
        for step, record in records.items():
            if not isinstance(record, Mapping) or not isinstance(record.get("key"), str):
                continue
            at = parse_time(record.get("at"))
            result = outputs.get(step, "")
            if at is None or not isinstance(result, str):
                continue
            if record["key"] not in index or index[record["key"]][1] < at:
                index[record["key"]] = (result, at)
    return index


def memo_lookup(workflows: Mapping[tuple[str, str], Mapping[str, Any]], namespace: str) -> MemoLookup:
    """A lookup for the engine; the namespace's index is built on the first call only (most plans make
    none: only a memoized step becoming ready looks up)."""
    index: dict[str, tuple[str, float]] | None = None

    def lookup(key: str) -> tuple[str, float] | None:
        nonlocal index
        if index is None:
            index = memo_index(workflows, namespace)
        return index.get(key)

    return lookup
