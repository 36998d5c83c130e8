"""A workflow's DAG as SVG, drawn on the server from :class:`meson.views.WorkflowDetail`: one column per
depth of the DAG, a box per step coloured by its phase, a curve per dependency. No client-side layout
library and no build step: the page inserts the SVG as it is."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from meson.views import StepNode, WorkflowDetail, dag_levels, duration

PHASE_COLOUR = {
    "Succeeded": "#2e7d32",
    "Running": "#0277bd",
    "Pending": "#f9a825",
    "Retrying": "#8e24aa",
    "Failed": "#c62828",
    "Waiting": "#9e9e9e",
    "Skipped": "#cfd8dc",
    "Omitted": "#cfd8dc",
    "Cached": "#81c784",  # memoized: a success reused
}
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 168, 44, 56, 16, 8


def _caption(step: StepNode) -> str:
    done = step.phases.get("Succeeded", 0)
    counts = f" {done}/{step.instances}" if step.instances > 1 else ""
    return f"{step.phase}{counts}"


def dag_svg(detail: WorkflowDetail) -> str:
    """The SVG text. Each step is ``<g class="step" data-step=NAME data-phase=PHASE>`` with a ``<title>``
    (attempts, node, duration, message) for the tooltip; names are escaped."""
    levels = dag_levels(detail.steps)
    columns: dict[int, list[StepNode]] = {}
    for s in detail.steps:
        columns.setdefault(levels.get(s.name, 0), []).append(s)
    where: dict[str, tuple[int, int]] = {}
    for col, steps in columns.items():
        for row, s in enumerate(steps):
            where[s.name] = (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + max(columns, default=0) * (BOX_W + GAP_X) + BOX_W
    height = PAD * 2 + max((len(c) for c in columns.values()), default=1) * (BOX_H + GAP_Y) - GAP_Y
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(f"DAG of {detail.name}")}>'
    ]
    for s in detail.steps:
        x2, y2 = where[s.name]
        for dep in s.dependencies:
            if dep not in where:
                continue
            x1, y1 = where[dep]
            x1, y1, y2m = x1 + BOX_W, y1 + BOX_H // 2, y2 + BOX_H // 2
            mid = (x1 + x2) // 2
            out.append(
                f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2m} {x2},{y2m}" fill="none" '
                f'stroke="#90a4ae" stroke-width="1.5" '
                f"data-from={quoteattr(dep)} data-to={quoteattr(s.name)}/>"
            )
    for s in detail.steps:
        x, y = where[s.name]
        colour = PHASE_COLOUR.get(s.phase, "#9e9e9e")
        text = "#212121" if s.phase in ("Pending", "Skipped", "Omitted") else "#ffffff"
        tip = f"{s.name}: {s.phase}, attempts {s.attempts}, node {s.node or '-'}, {duration(s.duration)}"
        if s.position is not None:
            tip += f", position {s.position}"
        if s.message:
            tip += f" ({s.message})"
        label = ("on exit: " if s.exit_step else "") + s.name
        out.append(
            f'<g class="step" data-step={quoteattr(s.name)} data-phase={quoteattr(s.phase)}>'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{colour}"/>'
            f'<text x="{x + 8}" y="{y + 18}" fill="{text}" font-size="13" font-weight="bold">'
            f"{escape(label[:22])}</text>"
            f'<text x="{x + 8}" y="{y + 35}" fill="{text}" font-size="11">{escape(_caption(s))}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)
