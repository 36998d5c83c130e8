"""End-to-end admission throughput of `meson operator` on the embedded real control plane.

    python -m bench.operator [--nodes 100] [--fanout 2000] [--workflows 200]

Two scenarios, each timed from the Workflow's creation:
  fanout     one Workflow whose step fans out over N items (N pods, one admission each)
  workflows  W Workflows of 5 chained steps each, all submitted at once

Prints, per scenario, the time until every pod was created (admitted), bound by kube-scheduler and
finished, the admission rate, and the operator's mean scheduling-cycle time and API error count
(from its /metrics). Everything runs on this machine (2 cores shared by etcd, kube-apiserver,
kube-scheduler, kwok and the operator), so the numbers are a floor for a real cluster. A benchmark,
not a test: it asserts nothing and writes bench/results/operator.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import yaml
from kubernetes import client, config

from e2e.cluster import build, controlplane
from e2e.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
GROUP, VERSION = "meson.dev", "v1alpha1"


def _step(name: str, deps: list[str] | None = None, **extra) -> dict:
    step = {
        "name": name,
        "template": {
            "metadata": {"annotations": {"sim.meson.dev/duration": "1s"}},
            "spec": {
                "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]
            },
        },
        **extra,
    }
    if deps:
        step["dependencies"] = deps
    return step


def _metric(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M):
        total += float(m.group(1))
    return total


def _workflow(name: str, steps: list[dict]) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"queue": "bench", "steps": steps},
    }


def _run(
    name: str,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    ns: str,
    wfs: list[dict],
    pods: int,
    operator: OperatorProcess,
) -> dict:
    before = operator.metrics()
    t0 = time.monotonic()
    for wf in wfs:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workflows", wf)
    created = bound = finished = None
    while time.monotonic() - t0 < 900:
        # Raw JSON from the watch cache: the poller must not compete with what it measures for CPU.
        raw = core.list_namespaced_pod(ns, resource_version="0", _preload_content=False)
        items = json.loads(raw.data)["items"]
        now = time.monotonic() - t0
        if created is None and len(items) >= pods:
            created = now
        if bound is None and sum(1 for p in items if p["spec"].get("nodeName")) >= pods:
            bound = now
        if sum(1 for p in items if p.get("status", {}).get("phase") == "Succeeded") >= pods:
            finished = now
            break
        time.sleep(1.0)
    phases = [
        (w.get("status") or {}).get("phase")
        for w in custom.list_namespaced_custom_object(GROUP, VERSION, ns, "workflows")["items"]
    ]
    after = operator.metrics()
    cycles = _metric(after, "meson_scheduling_cycle_seconds_count") - _metric(
        before, "meson_scheduling_cycle_seconds_count"
    )
    cycle_s = _metric(after, "meson_scheduling_cycle_seconds_sum") - _metric(
        before, "meson_scheduling_cycle_seconds_sum"
    )
    return {
        "scenario": name,
        "pods": pods,
        "workflows": len(wfs),
        "all_created_s": created,
        "all_bound_s": bound,
        "all_succeeded_s": finished,
        "admissions_per_s": round(pods / created, 1) if created else None,
        "workflows_succeeded": phases.count("Succeeded"),
        "cycles": int(cycles),
        "mean_cycle_ms": round(1000 * cycle_s / cycles, 1) if cycles else None,
        "api_errors": int(
            _metric(after, "meson_api_errors_total") - _metric(before, "meson_api_errors_total")
        ),
    }


def cluster_with_queue(nodes: int, queue: str) -> Path:
    """The embedded control plane with ``nodes`` kwok nodes, Meson's CRDs and a Queue of 100,000 CPUs
    (the benchmarks measure Meson's own pace, not a quota); its kubeconfig."""
    import subprocess

    kubeconfig = controlplane.up(nodes, controlplane.NodeShape(cpu="32", memory="256Gi", pods=110))
    kubectl = str(build.ensure_all()["kubectl"])

    def kc(*a: str, input: str | None = None) -> None:
        env = {"KUBECONFIG": str(kubeconfig), "HOME": str(Path.home()), "PATH": "/usr/bin:/bin"}
        subprocess.run([kubectl, *a], input=input, env=env, check=True, capture_output=True, text=True)

    kc("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    controlplane.wait_established(
        Path(kubectl), kubeconfig, [f"{p}.{GROUP}" for p in ("workflows", "queues")]
    )
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Queue", "metadata": {"name": queue},
            "spec": {"quota": {"cpu": {"guaranteed": 100000}}}}  # fmt: skip
    kc("apply", "-f", "-", input=yaml.safe_dump(body))
    return kubeconfig


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument("--workflows", type=int, default=200)
    args = parser.parse_args()

    already = controlplane.running_state() is not None
    kubeconfig = cluster_with_queue(args.nodes, "bench")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    operator = OperatorProcess(kubeconfig)
    operator.start()
    results = []
    try:
        chain = [_step(f"s{j}", [f"s{j - 1}"] if j else None) for j in range(5)]
        scenarios = [
            (
                "fanout",
                [_workflow("fan", [_step("w", foreach={"items": list(range(args.fanout))})])],
                args.fanout,
            ),
            ("workflows", [_workflow(f"wf-{i}", chain) for i in range(args.workflows)], args.workflows * 5),
        ]
        for name, wfs, pods in scenarios:
            if not pods:
                continue
            ns = f"bench-{name}-{int(time.time())}"
            core.create_namespace({"metadata": {"name": ns}})
            while not core.list_namespaced_service_account(ns).items:
                time.sleep(0.2)
            results.append(_run(name, core, custom, ns, wfs, pods, operator))
            core.delete_namespace(ns)
    finally:
        operator.stop()
        if not already:
            controlplane.down()

    print(
        f"\nMeson operator end to end: {args.nodes} kwok nodes, real kube-apiserver/kube-scheduler, 2 cores\n"
    )
    keys = ["pods", "workflows", "all_created_s", "all_bound_s", "all_succeeded_s", "admissions_per_s",
            "workflows_succeeded", "cycles", "mean_cycle_ms", "api_errors"]  # fmt: skip
    print(f"{'':24}" + "".join(f"{r['scenario']:>14}" for r in results))
    for k in keys:
        cells = "".join(f"{(round(r[k], 1) if isinstance(r[k], float) else r[k])!s:>14}" for r in results)
        print(f"{k:24}{cells}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "operator.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {RESULTS / 'operator.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
