"""`make demo`: Meson on the embedded real control plane, end to end.

Brings up the control plane with 8 fake nodes, installs the CRDs, the example queues and the example
ETL workflow, runs `meson operator`, and prints the workflow's progress until it finishes: steps are
admitted through the `analytics` queue, and kube-scheduler places every pod on a fake node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from e2e.cluster import build, controlplane
from e2e.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    kubeconfig = controlplane.up(8, controlplane.NodeShape(cpu="32", memory="256Gi", gpus=4))
    kubectl = str(build.ensure_all()["kubectl"])
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(*args: str, check: bool = True) -> str:
        out = subprocess.run([kubectl, *args], capture_output=True, text=True, env=env, check=False)
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
        print(f"operator log: {operator.log_path}")
    finally:
        operator.stop()
    print(f"The control plane keeps running: export KUBECONFIG={kubeconfig}")
    print("Stop it with: .venv/bin/python -m e2e.cluster down")
    return 0 if phase == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
