"""Route a chart's webhook Service to a `meson operator` running on this host.

On the embedded control plane the chart's pods sit on kwok nodes (they never run), and there is no
kube-proxy, so a Service's ClusterIP leads nowhere. The API server runs with
``--enable-aggregator-routing=true`` (e2e/cluster/controlplane.py): it calls a webhook Service at one of the
endpoints in its EndpointSlices (Endpoints before 1.34), choosing an address and connecting to it directly,
while checking the certificate against ``<service>.<namespace>.svc`` as in any cluster. So the chart's
Service is made selector-less (the kwok pods' EndpointSlices deleted) and given one endpoint: this host's
non-loopback address (Endpoint validation refuses loopback) and the port the operator listens on.
Everything else — the ValidatingWebhookConfiguration, the Service, the Secret, the RBAC, the API server's
TLS check — is the chart's and the real API server's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess

import yaml

from e2e.conftest import Cluster


def host_ip() -> str:
    """This host's non-loopback IPv4 address ($MESON_E2E_HOST_IP overrides)."""
    if os.environ.get("MESON_E2E_HOST_IP"):
        return os.environ["MESON_E2E_HOST_IP"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # no packet is sent: only the route is looked up
            ip = s.getsockname()[0]
            if not ipaddress.ip_address(ip).is_loopback:
                return ip
        except OSError:
            pass
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    for ip in out:
        if ipaddress.ip_address(ip).version == 4 and not ipaddress.ip_address(ip).is_loopback:
            return ip
    raise RuntimeError("no non-loopback IPv4 address on this host (set MESON_E2E_HOST_IP)")


def route_service_to_host(cluster: Cluster, namespace: str, service: str, port: int | list[int]) -> str:
    """Make ``namespace/service`` selector-less and point it at this host's ``port`` (or ports: one
    EndpointSlice each, one operator replica each); returns the address."""
    ports = [port] if isinstance(port, int) else list(port)
    ip = host_ip()
    svc = json.loads(cluster.kubectl("get", "service", service, "-n", namespace, "-o", "json").stdout)
    port_name = svc["spec"]["ports"][0]["name"]
    if svc["spec"].get("selector"):
        cluster.kubectl(
            "patch", "service", service, "-n", namespace, "--type=json",
            "-p", '[{"op": "remove", "path": "/spec/selector"}]',
        )  # fmt: skip
    # The EndpointSlice controller leaves the slices it made for a Service whose selector is removed (it
    # only stops syncing it): delete them, or the API server may pick a kwok pod's address.
    controller = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
    selector = f"kubernetes.io/service-name={service}"
    cluster.kubectl("delete", "endpointslices", "-n", namespace, "-l", f"{selector},{controller}")
    labels = {"app.kubernetes.io/managed-by": "meson-e2e"}
    # Slices of an earlier routing (a different set of ports) go first.
    cluster.kubectl(
        "delete",
        "endpointslices",
        "-n",
        namespace,
        "-l",
        f"{selector},app.kubernetes.io/managed-by=meson-e2e",
    )
    docs: list[dict] = [
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-host-{i}",
                "namespace": namespace,
                "labels": {**labels, "kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": port_name, "port": p, "protocol": "TCP"}],
        }
        for i, p in enumerate(ports)
    ]
    docs.append(
        {
            # Read by the API server's resolver before Kubernetes 1.34; not mirrored into a second slice.
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": service,
                "namespace": namespace,
                "labels": {**labels, "endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {"addresses": [{"ip": ip}], "ports": [{"name": port_name, "port": p, "protocol": "TCP"}]}
                for p in ports
            ],
        }
    )
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    slices = cluster.kubectl("get", "endpointslices", "-n", namespace, "-l", selector, "-o", "name").stdout
    expected = [f"endpointslice.discovery.k8s.io/{service}-host-{i}" for i in range(len(ports))]
    assert sorted(slices.split()) == expected, slices
    return ip
