"""Kueue's own scheduler performance harness, built from its published Go module and run on this machine.

The programs under ``test/performance/scheduler/`` of sigs.k8s.io/kueue (``runner``, ``minimalkueue``,
and the ``checker`` test compiled with ``go test -c``) are built in a tiny wrapper module in a
version-keyed cache directory (``$MESON_E2E_CACHE/kueue-<version>``, never in this repo), like the
control plane in ``e2e/cluster/build.py``. The runner starts its own envtest API server from
``KUBEBUILDER_ASSETS``, which points at this project's etcd and kube-apiserver binaries; ``PROJECT_DIR``
is the module's directory (its packages look for the repository root at start-up).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.trace import scaled
from e2e.cluster import build

VERSION = "v0.17.0"
MODULE = "sigs.k8s.io/kueue"
HARNESS = f"{MODULE}/test/performance/scheduler"
PROGRAMS = {
    "runner": ("build", f"{HARNESS}/runner"),
    "minimalkueue": ("build", f"{HARNESS}/minimalkueue"),
    "checker.test": ("test", f"{HARNESS}/checker"),
}


def cache_dir() -> Path:
    return build.cache_root() / f"kueue-{VERSION}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOFLAGS": "-mod=mod -buildvcs=false", "GOWORK": "off", "CGO_ENABLED": "0"})
    return env


def _go(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["go", *args], cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def ensure_built(log=print) -> tuple[dict[str, Path], Path]:
    """The harness binaries and the module directory (PROJECT_DIR); built once, then reused."""
    root = cache_dir()
    wrapper, bins = root / "wrapper", root / "bin"
    wrapper.mkdir(parents=True, exist_ok=True)
    bins.mkdir(parents=True, exist_ok=True)
    gomod = wrapper / "go.mod"
    if not gomod.exists():
        gomod.write_text(f"module meson.local/kueue-harness\n\ngo 1.25.0\n\nrequire {MODULE} {VERSION}\n")
    info = json.loads(_go(["mod", "download", "-json", f"{MODULE}@{VERSION}"], wrapper))
    module_dir = Path(info["Dir"])
    for name, (verb, pkg) in PROGRAMS.items():
        out = bins / name
        if out.exists():
            continue
        log(f"  building Kueue's {name} ({pkg}@{VERSION}) ...")
        t0 = time.monotonic()
        tmp = out.with_suffix(".tmp")
        _go(
            ["build", "-o", str(tmp), pkg] if verb == "build" else ["test", "-c", "-o", str(tmp), pkg],
            wrapper,
        )
        tmp.rename(out)
        log(f"  built {name} in {time.monotonic() - t0:.0f}s")
    return {n: bins / n for n in PROGRAMS}, module_dir


def assets_dir() -> Path:
    """KUBEBUILDER_ASSETS: links to this project's etcd and kube-apiserver (and kubectl)."""
    d = cache_dir() / "assets"
    d.mkdir(parents=True, exist_ok=True)
    bins = build.ensure_all()
    for name in ("etcd", "kube-apiserver", "kubectl"):
        link = d / name
        if not link.exists():
            link.symlink_to(bins[name])
    return d


def _stop_leftovers(assets: str, since: float) -> None:
    """The envtest etcd and kube-apiserver this run started, if the runner left them behind."""
    for p in psutil.process_iter(["cmdline", "create_time"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith(assets) and p.info["create_time"] >= since - 1:
            with contextlib.suppress(psutil.Error):
                p.kill()


def generator_config(module_dir: Path, scale: float) -> Path:
    """Kueue's baseline generator config, or a copy with each workload set's count scaled (as bench.trace)."""
    base = module_dir / "test/performance/scheduler/configs/baseline/generator.yaml"
    if scale >= 1:
        return base
    cfg = yaml.safe_load(base.read_text())
    for cohort in cfg["cohorts"]:
        for qs in cohort["queuesSets"]:
            for ws in qs["workloadsSets"]:
                ws["count"] = scaled(ws["count"], scale)
    out = cache_dir() / f"generator-scale-{scale:g}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def run(log=print, timeout: float = 1800, scale: float = 1.0) -> dict[str, Any]:
    """Build (if needed) and run Kueue's baseline, then its checker. Never raises: errors are recorded."""
    result: dict[str, Any] = {"version": VERSION, "scale": scale}
    try:
        bins, module_dir = ensure_built(log)
        env = {**os.environ, "PROJECT_DIR": str(module_dir), "KUBEBUILDER_ASSETS": str(assets_dir())}
        out = cache_dir() / "runs" / time.strftime("%Y%m%dT%H%M%S")
        out.mkdir(parents=True, exist_ok=True)
        args = [
            str(bins["runner"]),
            "--o",
            str(out),
            "--crds",
            str(module_dir / "config/components/crd/bases"),
            "--generatorConfig",
            str(generator_config(module_dir, scale)),
            "--minimalKueue",
            str(bins["minimalkueue"]),
            "--timeout=25m",
            "--withLogs=true",
            "--logToFile=true",
        ]
        log(f"  running Kueue's harness: {' '.join(args)}")
        t0, started = time.monotonic(), time.time()
        with (out / "runner.log").open("w") as f:
            proc = subprocess.run(
                args, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        result["runner_wall_s"] = round(time.monotonic() - t0, 1)
        _stop_leftovers(env["KUBEBUILDER_ASSETS"], started)
        result["artifacts"] = str(out)
        if proc.returncode != 0:
            result["error"] = f"runner exited {proc.returncode}: " + (out / "runner.log").read_text()[-2000:]
            return result
        summary = yaml.safe_load((out / "summary.yaml").read_text())
        cmd = yaml.safe_load((out / "minimalkueue.stats.yaml").read_text())
        result["wall_s"] = cmd["wallMs"] / 1000
        result["minimalkueue_cpu_s"] = (cmd.get("userMs", 0) + cmd.get("sysMs", 0)) / 1000
        result["minimalkueue_maxrss_mb"] = round(cmd.get("maxrss", 0) / 1024, 1)
        result["time_to_admission_s"] = {
            c: {
                "mean": s["averageTimeToAdmissionMs"] / 1000,
                "n": s.get("count"),
                "evictions": s.get("totalEvictions"),
            }
            for c, s in (summary.get("workloadClasses") or {}).items()
        }
        usage = {}
        for c, s in (summary.get("clusterQueueClasses") or {}).items():
            from datetime import datetime

            def ts(x: Any) -> datetime:
                return x if isinstance(x, datetime) else datetime.fromisoformat(str(x).replace("Z", "+00:00"))

            ms = (ts(s["lastEventTime"]) - ts(s["firstEventTime"])).total_seconds() * 1000
            usage[c] = round(s["cpuUsed"] * 100 / (s["nominalQuota"] * ms), 1) if ms else None
        result["cq_class_usage_pct"] = usage
        check = subprocess.run(
            [
                str(bins["checker.test"]),
                "-test.v",
                f"--summary={out / 'summary.yaml'}",
                f"--cmdStats={out / 'minimalkueue.stats.yaml'}",
                f"--range={module_dir / 'test/performance/scheduler/configs/baseline/rangespec.yaml'}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        result["checker_passed"] = check.returncode == 0
        result["checker_output"] = check.stdout[-1500:]
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, default=str))
