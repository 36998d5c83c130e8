"""`make demo`: bring up the embedded control plane and show kube-scheduler placing a pod on a fake node."""

from __future__ import annotations

import subprocess
import sys
import time

from e2e.cluster import build, controlplane

SAMPLE_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: meson-demo
  annotations:
    sim.meson.dev/duration: "5s"
spec:
  containers:
  - name: main
    image: busybox
    resources:
      requests: {cpu: 500m, memory: 64Mi}
"""


def main() -> int:
    kubeconfig = controlplane.up(4, controlplane.NodeShape())
    kubectl = str(build.ensure_all()["kubectl"])
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}

    def run(*args: str, input: str | None = None) -> str:
        out = subprocess.run(
            [kubectl, *args], input=input, capture_output=True, text=True, env=env, check=True
        )
        return out.stdout

    print(run("get", "nodes", "-L", "topology.kubernetes.io/zone"))
    run("delete", "pod", "meson-demo", "--ignore-not-found", "--wait=true")
    print(run("apply", "-f", "-", input=SAMPLE_POD))
    for _ in range(60):
        phase = run("get", "pod", "meson-demo", "-o", "jsonpath={.status.phase}")
        if phase in ("Running", "Succeeded"):
            break
        time.sleep(0.5)
    print(run("get", "pod", "meson-demo", "-o", "wide"))
    print(f"The control plane keeps running. Try: KUBECONFIG={kubeconfig} {kubectl} get pods -o wide")
    print("Stop it with: .venv/bin/python -m e2e.cluster down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
