"""Pure rendering of `make bench` results: the summary rows (text and Markdown) and the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import fmt, ratio

HEADER = ("scenario / metric", "Meson", "raw pods", "Meson/raw", "Kueue v0.17.0 (here)", "target")
CLASSES = ("small", "medium", "large")


def _s(v: Any, digits: int = 1) -> str:
    return fmt(v, " s", digits) if isinstance(v, int | float) else fmt(v)


def _wall(side: dict) -> str:
    """The wall time, or how long the side ran without finishing (and how much it finished)."""
    if side.get("wall_s") is not None:
        return _s(side["wall_s"])
    series = side.get("series") or []
    if not series:
        return "-"
    done = side.get("completed", side.get("pods_succeeded"))
    return f"> {series[-1][0]:.0f} s ({fmt(done)} done)"


def _elapsed(side: dict) -> float | None:
    series = side.get("series") or []
    return series[-1][0] if series else None


def _ratio(m: Any, r: Any) -> str:
    x = ratio(m, r)
    return f"{x:.2f}" if x is not None else "-"


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """The summary table: one row per metric, Meson next to raw pods and Kueue."""
    out: list[tuple[str, ...]] = []
    k = results.get("kueue")
    ku = results.get("kueue_upstream") or {}
    if k:
        m, r = k.get("meson") or {}, k.get("raw") or {}
        ku_wall = ku.get("wall_s")
        out.append(
            (
                f"Kueue baseline trace ({m.get('workloads') or r.get('workloads')} workloads)",
                "",
                "",
                "",
                "",
                "",
            )
        )
        out.append(
            (
                "  wall time",
                _wall(m),
                _wall(r),
                _ratio(m.get("wall_s"), r.get("wall_s"))
                if m.get("wall_s")
                else "> " + _ratio(_elapsed(m), r.get("wall_s")),
                _s(ku_wall) if ku_wall else ("error" if ku.get("error") else "-"),
                "ratio <= 1.25; < Kueue",
            )
        )
        out.append(
            (
                "  floor (work/capacity, last arrival)",
                _s(m.get("floor_s") or r.get("floor_s")),
                "",
                "",
                "",
                "",
            )
        )
        for c in CLASSES:
            mt = (m.get("time_to_admission_s") or {}).get(c) or {}
            rt = (r.get("time_to_admission_s") or {}).get(c) or {}
            kt = (ku.get("time_to_admission_s") or {}).get(c) or {}
            out.append(
                (
                    f"  time-to-admission {c}: mean / p99",
                    f"{_s(mt.get('mean'), 2)} / {_s(mt.get('p99'), 2)}",
                    f"{_s(rt.get('mean'), 2)} / {_s(rt.get('p99'), 2)}",
                    "",
                    _s(kt.get("mean"), 2),
                    "< Kueue",
                )
            )
        kusage = ku.get("cq_class_usage_pct") or {}
        out.append(
            (
                "  min queue usage (of nominal)",
                fmt(m.get("min_queue_usage_pct"), "%"),
                fmt(r.get("min_queue_usage_pct"), "%"),
                "",
                fmt(kusage.get("cq"), "% (class)"),
                "",
            )
        )
        out.append(
            (
                "  quota violations (sampled every 0.5 s)",
                f"{fmt(m.get('quota_violation_samples'))} of {fmt(m.get('samples'))}",
                "n/a (no quota)",
                "",
                "",
                "0",
            )
        )
        out.append(
            (
                "  completed",
                f"{fmt(m.get('completed'))}/{fmt(m.get('workloads'))}",
                f"{fmt(r.get('completed'))}/{fmt(r.get('workloads'))}",
                "",
                "",
                "all",
            )
        )
        out.append(
            (
                "  pods deleted before the end (preempted)",
                fmt(m.get("pods_ended_early")),
                fmt(r.get("pods_ended_early")),
                "",
                "",
                "",
            )
        )
        out.append(
            (
                "  operator CPU / peak RSS",
                f"{_s(m.get('operator_cpu_s'))} / {fmt(m.get('operator_peak_rss_mb'), ' MB')}",
                "",
                "",
                f"{_s(ku.get('minimalkueue_cpu_s'))} / {fmt(ku.get('minimalkueue_maxrss_mb'), ' MB')}",
                "",
            )
        )
        cpu, n = m.get("operator_cpu_s"), m.get("pods")
        out.append(
            (
                "  operator CPU per admission / mean cycle",
                f"{fmt(1000 * cpu / n, ' ms', 2) if cpu and n else '-'} / "
                f"{fmt(m.get('mean_cycle_ms'), ' ms')}",
                "",
                "",
                "",
                "<= 0.1 ms",
            )
        )
        if ku.get("checker_passed") is not None:
            out.append(
                (
                    "  Kueue's own checker (rangespec)",
                    "",
                    "",
                    "",
                    "passed" if ku["checker_passed"] else "failed",
                    "",
                )
            )
    for key, title in (
        ("workflows_single", "single-step workflows at once"),
        ("workflows_dag", "25-step fan-out/fan-in workflows"),
    ):
        w = results.get(key)
        if not w:
            continue
        m, r = w.get("meson") or {}, w.get("raw") or {}
        out.append((f"{fmt(m.get('workflows') or r.get('workflows'))} {title}", "", "", "", "", ""))
        out.append(
            (
                "  wall time",
                _wall(m),
                _wall(r),
                _ratio(m.get("wall_s"), r.get("wall_s")),
                "",
                "ratio <= 1.25",
            )
        )
        out.append(
            (
                "  workflows/min",
                fmt(m.get("workflows_per_min"), "", 0),
                fmt(r.get("workflows_per_min"), "", 0),
                _ratio(r.get("wall_s"), m.get("wall_s")),
                "",
                "Argo: 270 (defaults), 2,100 (tuned)",
            )
        )
        out.append(("  steps/s", fmt(m.get("steps_per_s")), fmt(r.get("steps_per_s")), "", "", ""))
        out.append(
            (
                "  operator CPU / peak RSS",
                f"{_s(m.get('operator_cpu_s'))} / {fmt(m.get('operator_peak_rss_mb'), ' MB')}",
                "",
                "",
                "",
                "",
            )
        )
    c = results.get("cost")
    if c:
        out.append(
            (
                f"cost: {fmt(c.get('workflow_objects'))} Workflow objects ({fmt(c.get('running'))} running)",
                "",
                "",
                "",
                "",
                "",
            )
        )
        out.append(
            ("  operator peak RSS", fmt(c.get("operator_peak_rss_mb"), " MB"), "", "", "", "<= 500 MB")
        )
        out.append(
            (
                "  operator CPU, create + settle",
                f"{_s(c.get('operator_cpu_s'))} ({_s(c.get('settled_s'), 0)})",
                "",
                "",
                "",
                "",
            )
        )
        ph = c.get("phases") or {}
        out.append(
            (
                f"  {'settled' if c.get('settled') else 'not settled'} after {_s(c.get('settled_s'), 0)}: "
                "Running / Succeeded / Pending",
                f"{fmt(ph.get('Running'))} / {fmt(ph.get('Succeeded'))} / {fmt(ph.get('Pending'))}",
                "",
                "",
                "",
                f"{fmt(c.get('running'))} / {fmt(c.get('finished'))} / {fmt(c.get('pending'))}",
            )
        )
        cpu, cycles = c.get("operator_cpu_s"), c.get("cycles")
        out.append(
            (
                "  operator CPU per cycle (mean, create + settle)",
                fmt(1000 * cpu / cycles, " ms", 1) if cpu and cycles else "-",
                "",
                "",
                "",
                "<= 0.1 ms",
            )
        )
        out.append(
            (
                "  mean cycle (wall) / cycles",
                f"{fmt(c.get('mean_cycle_ms'), ' ms')} / {fmt(cycles)}",
                "",
                "",
                "",
                "",
            )
        )
        out.append(
            (
                "  idle minute afterwards: CPU / cycles",
                f"{_s(c.get('idle_cpu_s'), 2)} / {fmt(c.get('idle_cycles'))}",
                "",
                "",
                "",
                "",
            )
        )
    lat = results.get("latency")
    if lat:
        m, r = lat.get("meson") or {}, lat.get("raw") or {}
        out.append(
            (f"latency: {fmt(m.get('pending') or r.get('pending'))} low-priority pending", "", "", "", "", "")
        )
        out.append(
            ("  high priority created -> bound p50", _s(m.get("p50_s"), 2), _s(r.get("p50_s"), 2), "", "", "")
        )
        out.append(
            (
                "  high priority created -> bound p99",
                _s(m.get("p99_s"), 2),
                _s(r.get("p99_s"), 2),
                "",
                "",
                "<= 1 s",
            )
        )
    return out


def plot(results: dict[str, Any], outdir: Path) -> list[Path]:
    """One PNG per scenario with time series: waiting, admitted (pods holding quota), completed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, res in results.items():
        if not isinstance(res, dict):
            continue
        sides = {
            s: res[s]["series"]
            for s in ("meson", "raw")
            if isinstance(res.get(s), dict) and res[s].get("series")
        }
        if not sides and res.get("series"):
            sides = {"meson": res["series"]}
        if not sides:
            continue
        fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
        for side, series in sides.items():
            t = [p[0] for p in series]
            for ax, idx, label in zip(
                axes,
                (1, 2, 3),
                ("waiting (no pod bound)", "pods created, not ended", "completed"),
                strict=True,
            ):
                ax.plot(t, [p[idx] for p in series], label=side, linewidth=1.2)
                ax.set_ylabel(label, fontsize=8)
        axes[0].legend(fontsize=8)
        axes[0].set_title(f"make bench: {key}", fontsize=10)
        axes[-1].set_xlabel("seconds since the first create")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        fig.tight_layout()
        path = outdir / f"{key}.png"
        fig.savefig(path, dpi=72)
        plt.close(fig)
        written.append(path)
    return written
