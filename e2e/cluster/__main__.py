"""python -m e2e.cluster {up,down,kubeconfig,build,bin}: the embedded real control plane."""

from __future__ import annotations

import argparse
import sys

from e2e.cluster import build, controlplane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.cluster",
        description="A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, "
        "kube-scheduler) with kwok fake nodes, built from the published Go modules and run on loopback.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start (or reuse) the control plane and make N fake nodes Ready")
    p_up.add_argument("--nodes", type=int, default=4, help="number of kwok nodes (default 4)")
    p_up.add_argument("--node-cpu", default="32", help="allocatable cpu per node (default 32)")
    p_up.add_argument("--node-memory", default="256Gi", help="allocatable memory per node (default 256Gi)")
    p_up.add_argument("--node-gpus", type=int, default=0, help="nvidia.com/gpu per node (default 0)")
    p_up.add_argument("--node-pods", type=int, default=110, help="max pods per node (default 110)")
    sub.add_parser("down", help="stop every process and delete the data directory")
    sub.add_parser("kubeconfig", help="print the kubeconfig path of the running control plane")
    sub.add_parser("build", help="build (or verify the cache of) every binary, then exit")
    p_bin = sub.add_parser("bin", help="print the cached path of a built binary (kubectl, helm, ...)")
    p_bin.add_argument("name")
    args = parser.parse_args(argv)

    if args.command == "up":
        shape = controlplane.NodeShape(
            cpu=args.node_cpu, memory=args.node_memory, gpus=args.node_gpus, pods=args.node_pods
        )
        print(controlplane.up(args.nodes, shape))
    elif args.command == "down":
        controlplane.down()
    elif args.command == "kubeconfig":
        if controlplane.running_state() is None:
            print("no control plane is running; start one with: python -m e2e.cluster up", file=sys.stderr)
            return 1
        print(controlplane.kubeconfig_path())
    elif args.command == "build":
        for name, path in sorted(build.ensure_all().items()):
            print(f"{name}\t{path}")
    elif args.command == "bin":
        print(build.ensure_all()[args.name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
