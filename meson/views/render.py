"""Rows of :mod:`meson.views.model` as `rich` renderables (tables with usage bars), for the `meson` CLI and
`make demo`. Pure: builds renderables, prints nothing. Bars are `rich` Text with styles, so the same
renderable prints in colour on a terminal and as plain characters in a log."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from meson.views.model import (
    PendingRow,
    QueueRow,
    ResourceUsage,
    StepNode,
    StreamDetail,
    StreamRow,
    WorkflowDetail,
    WorkflowRow,
    dag_levels,
)

BAR_WIDTH = 24
PHASE_STYLE = {
    "Succeeded": "green",
    "Running": "cyan",
    "Deploying": "cyan",
    "Updating": "cyan",
    "Pending": "yellow",
    "Suspended": "magenta",
    "RollingBack": "magenta",
    "Failed": "bold red",
    "Retrying": "magenta",
    "Waiting": "dim",
    "Skipped": "dim",
    "Omitted": "dim",
    "Cached": "green",
}


def amount(resource: str, value: int) -> str:
    """A canonical amount for people: cpu in cores (``31.5``), bytes in Gi/Mi, counts as they are."""
    if resource == "cpu":
        cores = value / 1000
        return f"{cores:g}" if cores == int(cores) or cores >= 10 else f"{cores:.1f}".rstrip("0").rstrip(".")
    if resource == "memory" or resource == "ephemeral-storage" or resource.startswith("hugepages-"):
        for suffix, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
            if value >= factor:
                return f"{value / factor:.3g}{suffix}"
        return str(value)
    return str(value)


def usage_bar(r: ResourceUsage, width: int = BAR_WIDTH) -> Text:
    """``usage`` against the queue's ``limit``: within the guarantee green, borrowed beyond it yellow, a
    ``|`` where the guarantee ends, ``·`` for room left up to the limit. With no limit the scale is the
    larger of usage and guarantee."""
    scale = max(r.limit or 0, r.guaranteed, r.usage, 1)
    cells = [round(v * width / scale) for v in (min(r.usage, r.guaranteed), r.usage, r.guaranteed)]
    within, used, guarantee = cells
    used = max(used, within)
    if r.usage and not used:
        used = within = 1 if r.usage <= r.guaranteed else 0
        used = max(used, 1)
    bar = Text()
    for i in range(width):
        if i < within:
            bar.append("█", "green")
        elif i < used:
            bar.append("█", "yellow")
        elif guarantee and i == guarantee and r.limit != r.guaranteed:
            bar.append("|", "dim")
        else:
            bar.append("·", "dim")
    return bar


def _tree_prefix(row: QueueRow) -> str:
    if row.depth == 0:
        return ""
    lines = "".join("   " if last else "│  " for last in row.ancestors_last)
    return lines + ("└─ " if row.last else "├─ ")


def queues_table(rows: Sequence[QueueRow], title: str | None = "Queues") -> Table:
    """The queue tree: per resource a bar of usage against the limit, used / guaranteed / limit, and the
    admitted and pending counts."""
    table = Table(title=title, title_justify="left")
    table.add_column("QUEUE", no_wrap=True)
    table.add_column("WEIGHT", justify="right")
    table.add_column("RESOURCE")
    table.add_column("USAGE (| = guarantee)", no_wrap=True)
    table.add_column("USED/GUAR/LIMIT", justify="right", no_wrap=True)
    table.add_column("ADMITTED", justify="right")
    table.add_column("PENDING", justify="right")
    table.add_column("NOTES")
    for row in rows:
        name = Text(_tree_prefix(row), "dim") + Text(row.name, "bold" if row.depth == 0 else "")
        notes = []
        if not row.active:
            notes.append(Text(f"inactive: {row.message}", "red"))
        if row.rate:
            notes.append(Text(f"rate {row.rate}", "blue"))
        if row.stop_policy != "None":
            notes.append(Text(f"stop {row.stop_policy}", "magenta"))
        if row.strategy == "StrictFIFO":
            notes.append(Text("StrictFIFO", "dim"))
        resources = row.resources or [ResourceUsage("-", 0, None, 0)]
        labels = Text("\n").join(Text(r.resource) for r in resources)
        bars = Text("\n").join(usage_bar(r) if r.resource != "-" else Text("") for r in resources)
        numbers = Text("\n").join(
            Text(
                f"{amount(r.resource, r.usage)}/{amount(r.resource, r.guaranteed)}/"
                + ("-" if r.limit is None else amount(r.resource, r.limit))
            )
            if r.resource != "-"
            else Text("")
            for r in resources
        )
        pending = Text(str(row.pending), "bold yellow" if row.pending else "dim")
        table.add_row(
            name,
            str(row.weight),
            labels,
            bars,
            numbers,
            str(row.admitted),
            pending,
            Text(", ").join(notes) if notes else "",
        )
    return table


def pending_table(
    rows: Sequence[PendingRow],
    title: str | None = "Pending",
    limit: int | None = None,
    per_queue: int | None = None,
    now: float | None = None,
) -> Table | Group:
    """Waiting workloads in admission order per queue: position, what, priority, predicted start (ETA,
    from now) and why. ``per_queue`` shows only the first rows of each queue (and how many more wait
    there); ``limit`` caps the rows."""
    now = time.time() if now is None else now
    table = Table(title=title, title_justify="left")
    table.add_column("QUEUE", no_wrap=True)
    table.add_column("POS", justify="right")
    table.add_column("WORKLOAD", no_wrap=True)
    table.add_column("PRIORITY")
    table.add_column("ETA", justify="right", no_wrap=True)
    table.add_column("REASON", overflow="fold")
    by_queue: dict[str, list[PendingRow]] = {}
    for r in rows:
        by_queue.setdefault(r.queue, []).append(r)
    shown = 0
    hidden = 0
    for queue, waiting in by_queue.items():
        first = True
        for i, r in enumerate(waiting):
            if (per_queue is not None and i >= per_queue) or (limit is not None and shown >= limit):
                more = sum(w.count for w in waiting[i:])
                hidden += more
                if per_queue is not None and (limit is None or shown < limit):
                    table.add_row("", "", Text(f"... and {more} more in {queue}", "dim"), "", "", "")
                break
            what = f"{r.namespace}/{r.name} {r.workload}" + (f" (x{r.count})" if r.count > 1 else "")
            table.add_row(
                Text(queue if first else "", "bold"),
                "-" if r.position is None else str(r.position),
                Text(what) if r.kind == "Workflow" else Text(what, "cyan"),
                Text(r.priority, "bold magenta" if "urgent" in r.priority or "high" in r.priority else ""),
                "-" if r.eta is None else ("now" if r.eta <= now else f"in {duration(r.eta - now)}"),
                r.reason,
            )
            first = False
            shown += 1
    if not rows:
        return Group(table, Text("nothing is waiting for admission", "dim"))
    if hidden and per_queue is None:
        return Group(table, Text(f"... and {hidden} more waiting", "dim"))
    return table


def progress_bar(done: int, running: int, total: int, width: int = 20) -> Text:
    """Finished (green) and running (cyan) step instances out of the total."""
    bar = Text()
    if total <= 0:
        return Text("·" * width, "dim")
    d = round(done * width / total)
    r = min(width - d, round(running * width / total))
    bar.append("█" * d, "green")
    bar.append("▒" * r, "cyan")
    bar.append("·" * (width - d - r), "dim")
    return bar


def workflows_table(rows: Sequence[WorkflowRow], title: str | None = "Workflows") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("WORKFLOW", "QUEUE", "PRIORITY", "PHASE", "PROGRESS", "", "RUN", "PEND", "PREEMPTED"):
        table.add_column(
            col, no_wrap=True, justify="right" if col in ("RUN", "PEND", "PREEMPTED") else "left"
        )
    for r in rows:
        done = r.succeeded + r.failed
        table.add_row(
            f"{r.namespace}/{r.name}",
            r.queue,
            Text(r.priority, "bold magenta" if "urgent" in r.priority or "high" in r.priority else ""),
            Text(r.phase, PHASE_STYLE.get(r.phase, "")),
            progress_bar(done, r.running, r.total),
            r.progress or f"{done}/{r.total}",
            str(r.running),
            str(r.pending),
            Text(str(r.preempted), "yellow") if r.preempted else Text("0", "dim"),
        )
    return table


def streams_table(rows: Sequence[StreamRow], title: str | None = "Stream jobs") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("STREAMJOB", "QUEUE", "PHASE", "READY", "REPLICAS", "WAITING", "REVISION"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        ready = Text()
        ready.append("●" * r.ready, "green")
        ready.append("○" * max(0, r.desired - r.ready), "dim")
        table.add_row(
            f"{r.namespace}/{r.name}",
            r.queue,
            Text(r.phase, PHASE_STYLE.get(r.phase, "")),
            ready + Text(f" {r.ready}/{r.desired}"),
            str(r.replicas),
            Text(str(r.waiting), "yellow") if r.waiting else Text("0", "dim"),
            r.revision,
        )
    return table


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h01m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _step_label(step: StepNode) -> Text:
    label = Text(step.name, "bold")
    label.append(f"  {step.phase}", PHASE_STYLE.get(step.phase, ""))
    if step.instances > 1:
        label.append(
            " (" + ", ".join(f"{n} {p.lower()}" for p, n in sorted(step.phases.items())) + ")", "dim"
        )
    facts = [f"attempts {step.attempts}", f"node {step.node or '-'}", duration(step.duration)]
    if step.position is not None:
        facts.append(f"position {step.position}")
    label.append("  " + "  ".join(facts), "dim")
    if step.message:
        label.append(f"  {step.message}", "italic")
    return label


def workflow_tree(detail: WorkflowDetail) -> Tree:
    """The DAG as a tree: each step under its dependency drawn deepest in the DAG (the others named with
    "also after"), roots at the top, the exit step last."""
    head = Text(f"{detail.namespace}/{detail.name}", "bold")
    head.append(f"  {detail.phase}", PHASE_STYLE.get(detail.phase, ""))
    head.append(f"  queue {detail.queue}" + (f"  priority {detail.priority}" if detail.priority else ""))
    if detail.progress:
        head.append(f"  {detail.progress}")
    if detail.message:
        head.append(f"  {detail.message}", "italic")
    tree = Tree(head)
    levels = dag_levels(detail.steps)
    names = {s.name for s in detail.steps}
    parent_of: dict[str, str | None] = {}
    for s in detail.steps:
        deps = [d for d in s.dependencies if d in names and levels.get(d, 0) < levels.get(s.name, 0)]
        parent_of[s.name] = max(deps, key=lambda d: levels[d]) if deps and not s.exit_step else None
    branches: dict[str, Tree] = {}
    for s in sorted(detail.steps, key=lambda s: levels.get(s.name, 0)):
        label = _step_label(s)
        others = [d for d in s.dependencies if d != parent_of[s.name]]
        if s.exit_step:
            label = Text("on exit: ", "dim") + label
        elif others:
            label.append(f"  also after {', '.join(others)}", "dim")
        parent = parent_of[s.name]
        branches[s.name] = branches.get(parent or "", tree).add(label)
    return tree


def stream_detail_view(detail: StreamDetail) -> Group:
    """A stream job: its state, its revisions (newest first) and its replica pods."""
    head = Text(f"{detail.namespace}/{detail.name}", "bold")
    head.append(f"  {detail.phase}", PHASE_STYLE.get(detail.phase, ""))
    head.append(
        f"  queue {detail.queue}  ready {detail.ready}/{detail.desired}  pods {detail.replicas}"
        f"  updated {detail.updated}  restarts {detail.restarts}"
    )
    if detail.message:
        head.append(f"  {detail.message}", "italic")
    revisions = Table(title="Revisions", title_justify="left")
    for col in ("REVISION", "PODS", "STATE"):
        revisions.add_column(col, no_wrap=True)
    for r in detail.revisions:
        state = [w for w, on in (("current", r.current), ("stable", r.stable), ("failed", r.failed)) if on]
        revisions.add_row(r.revision, str(r.replicas), Text(", ".join(state), "red" if r.failed else ""))
    pods = Table(title="Replicas", title_justify="left")
    for col in ("SLOT", "POD", "REVISION", "PHASE", "READY", "NODE", "RESTARTS"):
        pods.add_column(col, no_wrap=True)
    for p in detail.pods:
        pods.add_row(
            p.slot,
            p.pod,
            p.revision,
            Text(p.phase, PHASE_STYLE.get(p.phase, "")),
            Text("yes", "green") if p.ready else Text("no", "yellow"),
            p.node or "-",
            str(p.restarts),
        )
    parts: list = [head, revisions]
    parts.append(pods if detail.pods else Text("no replica pods", "dim"))
    return Group(*parts)
