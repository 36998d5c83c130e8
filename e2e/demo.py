"""`make demo`: Meson on the embedded real control plane, end to end.

Brings up the control plane with 8 fake nodes, installs the CRDs, the example queues and the example
ETL workflow, runs `meson operator`, and prints the workflow's progress until it finishes: steps are
admitted through the `analytics` queue, and kube-scheduler places every pod on a fake node. Then the example
StreamJob: its replicas admitted through the same queue, scaled from 3 to 5 with `kubectl scale`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from e2e.cluster import build, controlplane
from e2e.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    kubeconfig = controlplane.up(8, controlplane.NodeShape(cpu="32", memory="256Gi", gpus=4))
    kubectl = str(build.ensure_all()["kubectl"])
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(*args: str, check: bool = True, input: str | None = None) -> str:
        out = subprocess.run(
            [kubectl, *args], capture_output=True, text=True, env=env, check=False, input=input
        )
        if check and out.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout

    print(run("get", "nodes", "-L", "topology.kubernetes.io/zone"))
    run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    run("wait", "--for=condition=Established", "crd/workflows.meson.dev", "crd/queues.meson.dev")
    run("apply", "-f", str(REPO / "examples" / "tenant-queues.yaml"))
    print(run("get", "queues"))

    operator = OperatorProcess(kubeconfig)
    operator.start()
    try:
        name = run("create", "-f", str(REPO / "examples" / "etl-workflow.yaml"), "-o", "name").strip()
        print(f"created {name}; the operator admits its steps through queue 'analytics'\n")
        deadline = time.monotonic() + 300
        phase = ""
        while time.monotonic() < deadline:
            wf = json.loads(run("get", name, "-o", "json"))
            status = wf.get("status") or {}
            phase = status.get("phase", "")
            progress = status.get("progress", "-")
            print(f"  {time.strftime('%H:%M:%S')}  phase={phase or '-':10} progress={progress}")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(2)
        print()
        print(run("get", "mwf"))
        print(run("get", "pods", "-o", "wide", "-l", "meson.dev/workflow=" + name.split("/")[-1]))
        print(run("describe", name).split("Events:")[-1])
        stream_ok = _stream_job(run)
        print(f"operator log: {operator.log_path}")
    finally:
        operator.stop()
    print(f"The control plane keeps running: export KUBECONFIG={kubeconfig}")
    print("Stop it with: .venv/bin/python -m e2e.cluster down")
    return 0 if phase == "Succeeded" and stream_ok else 1


def _stream_job(run) -> bool:
    """examples/streamjob.yaml: its replicas admitted through the same queue, then scaled with kubectl."""
    job = yaml.safe_load((REPO / "examples" / "streamjob.yaml").read_text())
    # kwok ends a pod after 100 ms unless told otherwise: a stream processor runs until stopped.
    annotations = job["spec"]["template"]["metadata"].setdefault("annotations", {})
    annotations["sim.meson.dev/keep-running"] = "true"
    run("apply", "-f", "-", input=yaml.safe_dump(job))
    name = job["metadata"]["name"]
    print(f"applied streamjob {name} (3 replicas, queue analytics)")
    phase = ""
    for replicas in (3, 5):
        if replicas != 3:
            run("scale", f"streamjob/{name}", f"--replicas={replicas}")
            print(f"kubectl scale streamjob/{name} --replicas={replicas}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = json.loads(run("get", "streamjob", name, "-o", "json")).get("status") or {}
            phase = st.get("phase", "")
            ready = st.get("readyReplicas", 0)
            print(f"  {time.strftime('%H:%M:%S')}  phase={phase or '-':10} ready={ready}")
            if phase == "Running" and st.get("readyReplicas") == replicas:
                break
            time.sleep(2)
    print(run("get", "msj"))
    print(run("get", "pods", "-o", "wide", "-l", f"meson.dev/streamjob={name}"))
    print(run("get", "queues"))
    run("delete", "streamjob", name, "--wait=false")
    return phase == "Running"


if __name__ == "__main__":
    sys.exit(main())
