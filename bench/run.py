"""`make bench`: Meson on the embedded control plane, next to raw pods and to Kueue's own harness.

    python -m bench.run [--scenarios kueue,kueue-upstream,workflows,cost,latency] [--scale 1.0]

Scenarios (each Meson one also run as raw pods, the same pods at the same times, in the same run):
  kueue           Kueue's scheduler baseline trace (5 cohorts x 6 queues, 15,000 single-pod workloads)
  kueue-upstream  Kueue v0.17.0's own harness (runner + minimalkueue) on the same trace and machine
  workflows       5,000 single-step workflows at once, and 200 fan-out/fan-in workflows of 25 steps
  cost            10,000 Workflow objects present (2,000 running): operator CPU and peak RSS
  latency         10,000 low-priority steps pending: high-priority workflow created -> pod bound

Prints a table and writes bench/results/bench.json, bench/results/bench.md and one PNG per scenario.
The control plane is the one in ``$MESON_CLUSTER_DIR`` (started if needed with 15 kwok nodes of 40 cores:
600 cores, the trace's total quota). A benchmark: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench import kueue as kueue_harness
from bench import report, scenarios
from bench.kube import Api
from bench.stats import render_markdown, render_text
from e2e.cluster import build, controlplane, versions

REPO = Path(__file__).resolve().parents[1]
ALL = ("kueue", "kueue-upstream", "workflows", "cost", "latency")
NODES, NODE_CPU, NODE_PODS = 15, "40", 400


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def snapshot_head() -> Path:
    """The committed meson/ package at HEAD, exported outside the repo: others edit the working tree."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = Path(os.environ.get("TMPDIR", "/tmp")) / "meson-bench-src" / commit
    if not (dest / "meson" / "cli.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", "HEAD", "meson"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def machine(kubeconfig: Path, operator_args: tuple[str, ...]) -> dict[str, Any]:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "meson"], cwd=REPO, capture_output=True, text=True
    ).stdout
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "shared": "2 cores shared with other engineers' builds and tests: absolute numbers are noisy, "
        "ratios are "
        "measured in one run",
        "python": sys.version.split()[0],
        "kubernetes": versions.KUBERNETES,
        "etcd": versions.ETCD,
        "kwok": versions.KWOK,
        "nodes": f"{NODES} kwok nodes x {NODE_CPU} cores, {NODE_PODS} pods",
        "kube_scheduler_client_qps_burst": [controlplane.SCHEDULER_QPS, controlplane.SCHEDULER_BURST],
        "kube_scheduler": "default profile, leaderElect false; PriorityClasses with preemptionPolicy Never",
        "kube_controller_manager_qps_burst": [
            controlplane.CONTROLLER_MANAGER_QPS,
            controlplane.CONTROLLER_MANAGER_BURST,
        ],
        "operator_client": "kubernetes Python client, no client-side rate limit, connection pool 32",
        "operator_args": list(operator_args) or ["(defaults: --preempt-after 1)"],
        "bench_client": "aiohttp, 48 connections, no rate limit",
        "meson_commit": commit + (" (+ uncommitted changes under meson/)" if dirty else ""),
    }


async def run_cluster(
    kubeconfig: Path,
    ctx: scenarios.Ctx,
    chosen: list[str],
    results: dict[str, Any],
    save,
    sides: tuple[str, ...] = ("raw", "meson"),
) -> None:
    async with Api(kubeconfig) as api:
        await scenarios.setup(api)
        if "kueue" in chosen:
            results["kueue"] = {}
            for side in sides:
                log(f"kueue trace: {side}")
                results["kueue"][side] = await scenarios.kueue_side(api, ctx, side)
                results["kueue"][side]["load_avg_after"] = os.getloadavg()[0]
                save()
        if "kueue-upstream" in chosen:
            log("Kueue's own harness")
            results["kueue_upstream"] = await asyncio.to_thread(kueue_harness.run, log, 1800, ctx.scale)
            save()
        if "workflows" in chosen:
            for shape in ("single", "dag"):
                key = f"workflows_{shape}"
                results[key] = {}
                for side in sides:
                    log(f"workflows {shape}: {side}")
                    results[key][side] = await scenarios.workflows_side(api, ctx, side, shape)
                    save()
        if "latency" in chosen:
            results["latency"] = {}
            for side in sides:
                log(f"latency: {side}")
                results["latency"][side] = await scenarios.latency_side(api, ctx, side)
                save()
        if "cost" in chosen and "meson" in sides:
            log("cost")
            results["cost"] = await scenarios.cost_scenario(api, ctx)
            save()


def write(results: dict[str, Any], outdir: Path, plots: bool = True) -> str:
    outdir.mkdir(parents=True, exist_ok=True)
    rows = report.rows(results)
    (outdir / "bench.json").write_text(json.dumps(results, indent=1, default=str))
    m = results.get("machine", {})
    md = [
        f"`make bench` ({results.get('when', '')}, scale {results.get('scale')}): {m.get('cores')} cores "
        f"({m.get('cpu_model')}), {m.get('ram_gb')} GB RAM, Kubernetes {m.get('kubernetes')}, "
        f"{m.get('nodes')}; kube-scheduler client QPS/burst {m.get('kube_scheduler_client_qps_burst')}"
        + ("." if results.get("runs") else f"; Meson {m.get('meson_commit')}."),
        "",
        render_markdown(report.HEADER, rows),
        "",
    ]
    for run in results.get("runs", []):
        md.append(
            f"- run {run['when']}, scale {run['scale']}: {', '.join(run['scenarios'])}; Meson "
            f"{run['meson_commit']}; load average at start {run['load_avg_at_start']}"
        )
    md.append("")
    (outdir / "bench.md").write_text("\n".join(md))
    if plots:
        report.plot(results, outdir)
    return render_text(report.HEADER, rows)


SCENARIO_KEYS = ("kueue", "kueue_upstream", "workflows_single", "workflows_dag", "cost", "latency")


def render(paths: list[str], outdir: Path) -> str:
    """Merge the scenarios of several runs' bench.json (a later file's scenario wins) and write the table,
    JSON and plots again; each scenario keeps the scale, time and commit of the run that measured it."""
    merged: dict[str, Any] = {"runs": []}
    for path in paths:
        r = json.loads(Path(path).read_text())
        run = {k: r.get(k) for k in ("when", "scale", "scenarios", "bench_wall_s")}
        run["meson_commit"] = r.get("machine", {}).get("meson_commit")
        run["load_avg_at_start"] = r.get("machine", {}).get("load_avg_at_start")
        merged["runs"].append(run)
        merged.setdefault("machine", r.get("machine"))
        for key in SCENARIO_KEYS:
            if key in r:  # per side: a run of one side replaces that side only
                merged[key] = {**merged.get(key, {}), **r[key], "run": run}
    merged["when"] = ", ".join(f"{x['when']} (scale {x['scale']})" for x in merged["runs"])
    merged["scale"] = "/".join(str(x["scale"]) for x in merged["runs"])
    return write(merged, outdir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scenarios", default="all", help=f"comma-separated subset of {','.join(ALL)} (default all)"
    )
    ap.add_argument("--scale", type=float, default=1.0, help="scale every count down (0.1 for a smoke run)")
    ap.add_argument("--sides", default="raw,meson", help="raw,meson (default), or one of them")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument(
        "--profile", action="store_true", help="run the operator under cProfile (bench/results/profiles)"
    )
    ap.add_argument("--operator-arg", action="append", default=[], help="extra `meson operator` argument")
    ap.add_argument(
        "--operator-source",
        default="head",
        choices=("head", "worktree"),
        help="run the operator from the last commit (default) or from the working tree",
    )
    ap.add_argument("--render", nargs="+", metavar="BENCH_JSON", help="only merge and render earlier runs")
    ap.add_argument(
        "--keep-cluster", action="store_true", help="leave a control plane this run started running"
    )
    args = ap.parse_args(argv)
    chosen = (
        list(ALL)
        if args.scenarios in ("all", "")
        else [s.strip() for s in args.scenarios.split(",") if s.strip()]
    )
    unknown = set(chosen) - set(ALL)
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    outdir = Path(args.out)
    if args.render:
        print(render(args.render, outdir))
        return 0

    already = controlplane.running_state() is not None
    kubeconfig = controlplane.up(NODES, controlplane.NodeShape(cpu=NODE_CPU, memory="256Gi", pods=NODE_PODS))
    kubectl = str(build.ensure_all()["kubectl"])
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    subprocess.run(
        [kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")],
        env=env,
        check=True,
        capture_output=True,
    )
    controlplane.wait_established(Path(kubectl), kubeconfig, ["workflows.meson.dev", "queues.meson.dev"])
    operator_args = tuple(args.operator_arg)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scale": args.scale,
        "scenarios": chosen,
        "machine": machine(kubeconfig, operator_args),
    }
    prev = outdir / "bench.json"
    source = snapshot_head() if args.operator_source == "head" else None
    results["machine"]["meson_commit"] = (
        (source.name + " (committed main)") if source else results["machine"]["meson_commit"]
    )
    ctx = scenarios.Ctx(
        kubeconfig, args.scale, operator_args, source, outdir / "profiles" if args.profile else None, log
    )
    t0 = time.monotonic()

    def save() -> None:
        write(results, outdir, plots=False)

    try:
        sides = tuple(s for s in ("raw", "meson") if s in args.sides.split(","))
        asyncio.run(run_cluster(kubeconfig, ctx, chosen, results, save, sides))
    finally:
        results["bench_wall_s"] = round(time.monotonic() - t0, 1)
        results["operator_logs"] = ctx.operator_logs
        if not already and not args.keep_cluster:
            controlplane.down()
    table = write(results, outdir)
    print(
        f"\n{results['machine']['cores']} cores ({results['machine']['cpu_model']}), Kubernetes "
        f"{versions.KUBERNETES}, scale {args.scale}\n"
    )
    print(table)
    print(f"\nwrote {prev}, {outdir / 'bench.md'} and plots in {outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
