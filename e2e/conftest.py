"""Session fixtures for tests against the embedded real control plane.

The control plane is brought up once per test run (built on first use). If one was already running when
the run started it is reused and left running; otherwise it is stopped at the end. A control plane that
cannot start fails the run loudly: e2e tests are never skipped.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from e2e.cluster import build, controlplane
from e2e.operator import OperatorProcess

E2E_NODES = int(os.environ.get("MESON_E2E_NODES", "20"))


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.kubectl_bin), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.helm_bin), *args], capture_output=True, text=True, env=self.env(), timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def wait_established(self, *plurals: str) -> None:
        """Wait until the CRDs of these kinds (``workflows``: ``workflows.meson.dev``) are Established."""
        names = [p if "." in p else f"{p}.meson.dev" for p in plurals]
        controlplane.wait_established(self.kubectl_bin, self.kubeconfig, names)

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    external = os.environ.get("MESON_E2E_KUBECONFIG")
    bins = build.ensure_all()
    if external:
        # An existing cluster (kind, minikube...). It must run kwok for the simulated pod lifecycle.
        yield Cluster(kubeconfig=Path(external), kubectl_bin=bins["kubectl"], helm_bin=bins["helm"])
        return
    already_running = controlplane.running_state() is not None
    shape = controlplane.NodeShape(cpu="32", memory="256Gi", gpus=4)
    kubeconfig = controlplane.up(E2E_NODES, shape)
    yield Cluster(kubeconfig=kubeconfig, kubectl_bin=bins["kubectl"], helm_bin=bins["helm"])
    if not already_running and not os.environ.get("MESON_E2E_KEEP"):
        controlplane.down()


@pytest.fixture
def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def custom(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client())


@pytest.fixture
def queues(cluster: Cluster) -> Iterator[list[str]]:
    """Names of cluster-scoped Queues a test creates; deleted afterwards."""
    made: list[str] = []
    yield made
    if made:
        cluster.kubectl("delete", "queue.meson.dev", *made, "--wait=false", check=False)


@pytest.fixture(scope="module")
def priority_classes(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """A low (10) and a high (1000) PriorityClass."""
    low, high = f"meson-e2e-low-{uuid.uuid4().hex[:6]}", f"meson-e2e-high-{uuid.uuid4().hex[:6]}"
    for name, value in ((low, 10), (high, 1000)):
        cluster.kubectl("create", "priorityclass", name, f"--value={value}")
    yield low, high
    cluster.kubectl("delete", "priorityclass", low, high, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (its pods go with it)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # Pods are refused until the controller-manager has created the namespace's default ServiceAccount.
    deadline = time.monotonic() + 60
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name} after 60s"
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The Meson CRDs, applied as a user would (`kubectl apply -f crds/`) and established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.wait_established("workflows", "cronworkflows", "queues", "streamjobs")


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds: None) -> Iterator[OperatorProcess]:
    """`meson operator` as a real process (admin credentials; the chart's RBAC is tested separately), with
    its web dashboard on a free port (e2e/test_dashboard.py drives it in a browser)."""
    from e2e.operator import free_port

    dashboard_port = free_port()
    proc = OperatorProcess(cluster.kubeconfig, extra_args=("--dashboard-port", str(dashboard_port)))
    proc.dashboard_port = dashboard_port  # type: ignore[attr-defined]
    proc.start()
    yield proc
    proc.stop()
    print(f"operator log: {proc.log_path}")
