"""The demo's screen: what happened (narration), who leads, and the views of `meson queues` / `meson pending`
(meson/views) plus workflow progress and stream replicas. A `rich` Live display on a terminal; periodic
plain snapshots (and every narration line as it happens) when stdout is not a terminal (CI, logs)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meson import views


@dataclass
class Replica:
    """One operator process as the screen shows it."""

    label: str
    pid: int = 0
    state: str = "starting"  # starting, standby, leader, killed


@dataclass
class Screen:
    started: float = field(default_factory=time.monotonic)
    narration: list[tuple[float, str, str]] = field(default_factory=list)  # (elapsed, text, style)
    replicas: list[Replica] = field(default_factory=list)
    snapshot: views.Snapshot = field(default_factory=views.Snapshot)
    preemptions: int = 0
    live: Live | None = None
    console: Console = field(default_factory=lambda: Console(highlight=False))
    plain_every: float = 10.0
    scenario_seconds: float = 0.0
    _last_plain: float = -1e9
    _plain_due: float | None = None  # a plain snapshot shortly after each narrated event

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal

    def __post_init__(self) -> None:
        if not self.console.is_terminal:
            # A log: no colour, a fixed width that keeps the tables intact.
            self.console = Console(highlight=False, no_color=True, width=150, force_terminal=False)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- output -------------------------------------------------------------------------------------
    def say(self, text: str, style: str = "") -> None:
        entry = (self.elapsed(), text, style)
        self.narration.append(entry)
        if self.live is None:
            self.console.print(Text(f"[{entry[0]:5.1f}s] ", "dim") + Text(text, style))
            if self._plain_due is None:
                self._plain_due = entry[0] + 3
        self.refresh()

    def start_live(self) -> None:
        if self.interactive:
            self.live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def stop_live(self) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.stop()
            self.live = None

    def refresh(self, snapshot: views.Snapshot | None = None) -> None:
        if snapshot is not None:
            self.snapshot = snapshot
        if self.live is not None:
            self.live.update(self.render())
        elif snapshot is not None and (
            self.elapsed() - self._last_plain >= self.plain_every
            or (self._plain_due is not None and self.elapsed() >= self._plain_due)
        ):
            self._last_plain, self._plain_due = self.elapsed(), None
            self.console.print(Text(f"----- snapshot at {self.elapsed():.0f}s -----", "bold"))
            self.console.print(self.render(narration=False))

    # --- the screen ---------------------------------------------------------------------------------
    def render(self, narration: bool = True) -> Group:
        snap = self.snapshot
        parts: list = []
        if narration:
            lines = Text()
            for at, text, style in self.narration[-7:]:
                lines.append(f"{at:5.1f}s  ", "dim")
                lines.append(text + "\n", style)
            parts.append(Panel(lines, title="Meson demo", title_align="left", border_style="blue"))
        parts.append(self._replicas())
        parts.append(views.queues_table(views.queue_rows(snap.queues), title="Queues"))
        wf = views.workflow_rows(snap.workflows)
        if wf:
            parts.append(
                views.workflows_table(wf, title=f"Workflows (preemptions so far: {self.preemptions})")
            )
        streams = views.stream_rows(snap.streamjobs)
        if streams:
            parts.append(views.streams_table(streams))
        pending = views.pending_rows(snap.workflows, snap.streamjobs)
        parts.append(
            views.pending_table(pending, title="Pending (admission order per queue)", per_queue=2, limit=10)
        )
        return Group(*parts)

    def _replicas(self) -> Table:
        table = Table.grid(padding=(0, 3))
        cells = [Text(f"t={self.elapsed():5.1f}s", "bold")]
        for r in self.replicas:
            style, mark = {
                "leader": ("bold green", "● leader"),
                "standby": ("cyan", "○ standby"),
                "killed": ("bold red", "✖ killed (SIGKILL)"),
            }.get(r.state, ("dim", "… starting"))
            cells.append(Text(f"{r.label} pid {r.pid}: ", "") + Text(mark, style))
        table.add_row(*cells)
        return table


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
