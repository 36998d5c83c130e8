"""StreamJobs at scale: `meson operator` on the embedded real control plane (kwok nodes).

    python -m bench.streamjobs [--nodes 20] [--jobs 200] [--replicas 5]

Creates J StreamJobs of R replicas each (100m CPU per pod, one Queue with room for all, maxSurge 1,
maxUnavailable 0, minReadySeconds 0) all at once, then changes every job's image at once, and reports:

  all_running_s   from the first create until every job is phase Running with R ready replicas
  all_rolled_s    from the first template change until every job runs the new revision, stable, with R pods
  cpu_s           the operator process's CPU seconds (user + system) in each phase
  peak_rss_mib    the operator's peak resident memory (VmHWM), over the whole run

plus the peak number of live pods during the rollout (never above J * (R + 1) with maxSurge 1) and the
operator's mean scheduling-cycle time and API error count from its /metrics. Everything shares this
machine's 2 cores with etcd, kube-apiserver, kube-scheduler and kwok, so the numbers are a floor for a
real cluster. A benchmark, not a test: it asserts nothing and writes bench/results/streamjobs.json.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from pathlib import Path

import psutil
from kubernetes import client, config

from bench.operator import _metric, cluster_with_queue
from e2e.cluster import controlplane
from e2e.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
GROUP, VERSION = "meson.dev", "v1alpha1"
QUEUE = "bench-stream"


def _template(image: str) -> dict:
    return {
        "metadata": {"annotations": {"sim.meson.dev/keep-running": "true"}},
        "spec": {"containers": [{"name": "c", "image": image, "resources": {"requests": {"cpu": "100m"}}}]},
    }


def _streamjob(name: str, replicas: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StreamJob",
        "metadata": {"name": name},
        "spec": {
            "queue": QUEUE,
            "replicas": replicas,
            "minReadySeconds": 0,
            "progressDeadlineSeconds": 3600,
            "template": _template("busybox:1"),
        },
    }


class Watcher:
    """The operator process's CPU time and peak memory, and the live pods of the namespace (sampled)."""

    def __init__(self, pid: int, core: client.CoreV1Api, namespace: str) -> None:
        self.proc = psutil.Process(pid)
        self.core, self.namespace = core, namespace
        self.peak_pods = 0
        self.sampling_pods = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return self.proc.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            if self.sampling_pods:
                raw = self.core.list_namespaced_pod(
                    self.namespace, resource_version="0", _preload_content=False
                )
                items = json.loads(raw.data)["items"]
                live = [
                    p for p in items if (p.get("status") or {}).get("phase") in ("Pending", "Running", None)
                ]
                self.peak_pods = max(self.peak_pods, len(live))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _by_status(text: str) -> dict[str, int]:
    """meson_api_errors_total per HTTP status (404 and 409 included: a delete of what is gone, a create of
    what exists, both taken as done)."""
    found = re.findall(r'^meson_api_errors_total\{status="([^"]*)"\} ([0-9.e+-]+)$', text, re.M)
    return {status: int(float(n)) for status, n in found}


def _statuses(custom: client.CustomObjectsApi, ns: str) -> list[dict]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "streamjobs")["items"]
    return [j.get("status") or {} for j in items]


def _wait(what, custom: client.CustomObjectsApi, ns: str, done, timeout: float = 1800) -> float | None:
    t0 = time.monotonic()
    last = 0
    while time.monotonic() - t0 < timeout:
        statuses = _statuses(custom, ns)
        n = sum(1 for st in statuses if done(st))
        if n != last:
            print(f"  {what}: {n}/{len(statuses)} after {time.monotonic() - t0:.0f}s", flush=True)
            last = n
        if statuses and n == len(statuses):
            return time.monotonic() - t0
        time.sleep(2.0)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streamjobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=5)
    args = parser.parse_args()

    already = controlplane.running_state() is not None
    kubeconfig = cluster_with_queue(args.nodes, QUEUE)
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-stream-{int(time.time())}"
    core.create_namespace({"metadata": {"name": ns}})
    while not core.list_namespaced_service_account(ns).items:
        time.sleep(0.2)

    operator = OperatorProcess(kubeconfig)
    operator.start()
    assert operator.proc is not None
    watcher = Watcher(operator.proc.pid, core, ns)
    r = args.replicas
    result: dict = {"nodes": args.nodes, "jobs": args.jobs, "replicas": r, "pods": args.jobs * r}
    try:
        before, cpu0 = operator.metrics(), watcher.cpu()
        t0 = time.monotonic()
        for i in range(args.jobs):
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, "streamjobs", _streamjob(f"sj-{i}", r))
        result["create_s"] = round(time.monotonic() - t0, 1)
        print(f"created {args.jobs} StreamJobs in {result['create_s']}s", flush=True)
        running = _wait(
            "Running",
            custom,
            ns,
            lambda st: (
                st.get("phase") == "Running" and st.get("readyReplicas") == r and st.get("replicas") == r
            ),
        )
        result["all_running_s"] = round(time.monotonic() - t0, 1) if running is not None else None
        cpu1 = watcher.cpu()
        result["deploy_cpu_s"] = round(cpu1 - cpu0, 1)
        first = {st.get("currentRevision") for st in _statuses(custom, ns)}

        watcher.sampling_pods = True
        t1 = time.monotonic()
        patch = {"spec": {"template": _template("busybox:2")}}
        for i in range(args.jobs):
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "streamjobs", f"sj-{i}", patch)
        result["update_s"] = round(time.monotonic() - t1, 1)
        print(f"updated {args.jobs} templates in {result['update_s']}s", flush=True)
        old = first

        def rolled(st: dict) -> bool:
            current = st.get("currentRevision")
            return (
                current not in old
                and st.get("stableRevision") == current
                and st.get("phase") == "Running"
                and st.get("replicas") == r
                and st.get("updatedReplicas") == r
            )

        done = _wait("rolled", custom, ns, rolled)
        result["all_rolled_s"] = round(time.monotonic() - t1, 1) if done is not None else None
        watcher.sampling_pods = False
        result["rollout_cpu_s"] = round(watcher.cpu() - cpu1, 1)
        result["peak_live_pods_in_rollout"] = watcher.peak_pods
        result["peak_rss_mib"] = round(watcher.peak_rss_mib(), 1)
        after = operator.metrics()
        cycles = _metric(after, "meson_scheduling_cycle_seconds_count") - _metric(
            before, "meson_scheduling_cycle_seconds_count"
        )
        cycle_s = _metric(after, "meson_scheduling_cycle_seconds_sum") - _metric(
            before, "meson_scheduling_cycle_seconds_sum"
        )
        result["cycles"] = int(cycles)
        result["mean_cycle_ms"] = round(1000 * cycle_s / cycles, 1) if cycles else None
        result["api_errors"] = int(
            _metric(after, "meson_api_errors_total") - _metric(before, "meson_api_errors_total")
        )
        result["api_errors_by_status"] = {
            status: n - _by_status(before).get(status, 0) for status, n in _by_status(after).items()
        }
    finally:
        watcher.stop()
        operator.stop()
        core.delete_namespace(ns)
        if not already:
            controlplane.down()

    print(f"\nStreamJobs end to end: {args.nodes} kwok nodes, real kube-apiserver/kube-scheduler, 2 cores\n")
    for k, v in result.items():
        print(f"{k:28}{v!s:>12}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "streamjobs.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {RESULTS / 'streamjobs.json'}  (operator log: {operator.log_path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
