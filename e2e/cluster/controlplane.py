"""Run etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback.

Everything lives in one data directory (default ``<repo>/.meson-cluster``, or ``$MESON_CLUSTER_DIR``):
certificates, the admin kubeconfig, component logs, etcd data and ``state.json`` (ports and pids), so
``down`` can stop exactly what ``up`` started and ``up`` can tell whether a cluster is already running.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from e2e.cluster import build, versions

REPO = Path(__file__).resolve().parents[2]
STAGES = Path(__file__).with_name("stages.yaml")
# kube-scheduler's default client limit (50 QPS / burst 100) caps it near 50 pods/s; the upstream
# scheduler_perf harness raises it to 5000 so the benchmark measures the scheduler, not the throttle.
SCHEDULER_QPS = 5000
SCHEDULER_BURST = 5000
CONTROLLER_MANAGER_QPS = 500
CONTROLLER_MANAGER_BURST = 1000
ZONES = ("zone-a", "zone-b", "zone-c")
NODE_PREFIX = "kwok-node-"


def data_dir() -> Path:
    return Path(os.environ.get("MESON_CLUSTER_DIR", REPO / ".meson-cluster"))


def log(msg: str) -> None:
    print(f"[e2e.cluster] {msg}", file=sys.stderr, flush=True)


@dataclass
class NodeShape:
    cpu: str = "32"
    memory: str = "256Gi"
    gpus: int = 0
    pods: int = 110


@dataclass
class State:
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    token: str = ""
    version: str = versions.KUBERNETES

    @classmethod
    def load(cls) -> State | None:
        path = data_dir() / "state.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self) -> None:
        (data_dir() / "state.json").write_text(json.dumps(asdict(self), indent=2))


def kubeconfig_path() -> Path:
    return data_dir() / "kubeconfig"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _spawn(state: State, name: str, args: list[str]) -> None:
    logs = data_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    state.pids[name] = proc.pid
    state.save()


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(data_dir() / "pki" / "apiserver.crt"))


def _get(url: str, token: str | None = None, timeout: float = 2.0) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        ctx = _ssl_context() if url.startswith("https") else None
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ssl.SSLError) as e:
        return 0, str(e)


def _wait(what: str, check, timeout: float, state: State) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        dead = [n for n, pid in state.pids.items() if not _alive(pid)]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}; see {data_dir()}/logs/")
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; see {data_dir()}/logs/")


def _make_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True
    )
    subprocess.run(
        ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
        check=True,
        capture_output=True,
    )


def _write_kubeconfig(state: State) -> None:
    server = f"https://127.0.0.1:{state.ports['apiserver']}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "meson-e2e",
                "cluster": {
                    "server": server,
                    "certificate-authority": str(data_dir() / "pki" / "apiserver.crt"),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": state.token}}],
        "contexts": [{"name": "meson-e2e", "context": {"cluster": "meson-e2e", "user": "admin"}}],
        "current-context": "meson-e2e",
    }
    kubeconfig_path().write_text(yaml.safe_dump(config))
    kubeconfig_path().chmod(0o600)


def _kwok_config(state: State, kwok_stages: Path) -> Path:
    options = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "manageAllNodes": False,
            "manageNodesWithAnnotationSelector": "kwok.x-k8s.io/node=fake",
            "serverAddress": f"127.0.0.1:{state.ports['kwok']}",
            "nodeLeaseDurationSeconds": 40,
            # A config file replaces kwok's defaults wholesale, so the worker counts must be given too.
            "nodeLeaseParallelism": 16,
            "nodePlayStageParallelism": 16,
            "podPlayStageParallelism": 16,
            "podsOnNodeSyncParallelism": 16,
            "cidr": "10.244.0.1/16",
            "nodeIP": "10.0.0.1",
        },
    }
    docs: list[dict] = [options]
    for path in [*sorted(kwok_stages.glob("*.yaml")), STAGES]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    path = data_dir() / "kwok.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def kwok_upstream_stages() -> Path:
    """kwok's own node-initialize, pod-ready and pod-delete stages, copied out of the kwok module."""
    dest = build.GROUPS["kwok"].dir / "stages"
    if dest.exists():
        return dest
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    src = Path(gomodcache.stdout.strip()) / f"sigs.k8s.io/kwok@{versions.KWOK}" / "kustomize" / "stage"
    tmp = dest.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for rel in ("node/fast/node-initialize.yaml", "pod/fast/pod-ready.yaml", "pod/fast/pod-delete.yaml"):
        shutil.copy(src / rel, tmp / rel.replace("/", "-"))
    tmp.rename(dest)
    return dest


def _start(state: State, bins: dict[str, Path]) -> None:
    d = data_dir()
    pki = d / "pki"
    _make_pki(pki)
    (d / "tokens.csv").write_text(f"{state.token},admin,admin,system:masters\n")

    _spawn(
        state,
        "etcd",
        [
            str(bins["etcd"]),
            "--data-dir", str(d / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{state.ports['etcd']}",
            "--advertise-client-urls", f"http://127.0.0.1:{state.ports['etcd']}",
            "--listen-peer-urls", f"http://127.0.0.1:{state.ports['etcd_peer']}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{state.ports['etcd_peer']}",
            "--initial-cluster", f"default=http://127.0.0.1:{state.ports['etcd_peer']}",
            "--unsafe-no-fsync",  # a throwaway test cluster: durability is not worth the disk latency
            "--quota-backend-bytes", str(4 << 30),
            "--log-level", "warn",
        ],
    )  # fmt: skip
    _wait(
        "etcd",
        lambda: _get(f"http://127.0.0.1:{state.ports['etcd']}/health")[0] == 200,
        60,
        state,
    )

    _spawn(
        state,
        "kube-apiserver",
        [
            str(bins["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={state.ports['apiserver']}",
            f"--cert-dir={pki}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--endpoint-reconciler-type=none",  # loopback is not a valid endpoint address
            "--allow-privileged=true",
            # Webhook (and aggregated API) Services are called at an endpoint of their EndpointSlices, not
            # at the ClusterIP: there is no kube-proxy here, so a ClusterIP leads nowhere.
            # (cmd/kube-apiserver/app/server.go buildServiceResolver -> NewEndpointServiceResolver)
            "--enable-aggregator-routing=true",
        ],
    )
    _wait(
        "kube-apiserver /readyz",
        lambda: _get(f"https://127.0.0.1:{state.ports['apiserver']}/readyz", state.token)[0] == 200,
        120,
        state,
    )
    _write_kubeconfig(state)
    kubeconfig = str(kubeconfig_path())

    scheduler_config = d / "kube-scheduler.yaml"
    scheduler_config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {
                    "kubeconfig": kubeconfig,
                    "qps": SCHEDULER_QPS,
                    "burst": SCHEDULER_BURST,
                },
                "leaderElection": {"leaderElect": False},
            }
        )
    )
    _spawn(
        state,
        "kube-scheduler",
        [
            str(bins["kube-scheduler"]),
            f"--config={scheduler_config}",
            "--bind-address=127.0.0.1",
            f"--secure-port={state.ports['scheduler']}",
        ],
    )
    _spawn(
        state,
        "kube-controller-manager",
        [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={state.ports['controller_manager']}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'apiserver.crt'}",
            f"--kube-api-qps={CONTROLLER_MANAGER_QPS}",
            f"--kube-api-burst={CONTROLLER_MANAGER_BURST}",
        ],
    )
    _spawn(
        state,
        "kwok",
        [
            str(bins["kwok"]),
            f"--kubeconfig={kubeconfig}",
            f"--config={_kwok_config(state, kwok_upstream_stages())}",
        ],
    )


def running_state() -> State | None:
    """The state of a healthy running cluster in data_dir(), or None."""
    state = State.load()
    if state is None or state.version != versions.KUBERNETES:
        return None
    if not state.pids or not all(_alive(pid) for pid in state.pids.values()):
        return None
    if not kubeconfig_path().exists():
        return None
    code, _ = _get(f"https://127.0.0.1:{state.ports['apiserver']}/readyz", state.token)
    return state if code == 200 else None


def up(nodes: int, shape: NodeShape) -> Path:
    """Start the control plane (or reuse a healthy one) and make exactly `nodes` fake nodes Ready."""
    started = time.monotonic()
    state = running_state()
    if state is None:
        bins = build.ensure_all()
        down(quiet=True)
        data_dir().mkdir(parents=True, exist_ok=True)
        names = ("etcd", "etcd_peer", "apiserver", "scheduler", "controller_manager", "kwok")
        state = State(ports={n: _free_port() for n in names}, token=secrets.token_hex(24))
        state.save()
        try:
            _start(state, bins)
        except Exception:
            down(quiet=True)
            raise
        log(f"control plane {versions.KUBERNETES} up at https://127.0.0.1:{state.ports['apiserver']}")
    else:
        log("reusing the running control plane")
    from e2e.cluster import nodes as fake_nodes

    fake_nodes.reconcile(nodes, shape)
    _wait(f"{nodes} kwok nodes to be Ready", lambda: fake_nodes.ready_count() >= nodes, 120, state)
    fake_nodes.wait_default_service_account(timeout=60)
    log(f"ready: {nodes} kwok nodes in {time.monotonic() - started:.1f}s; KUBECONFIG={kubeconfig_path()}")
    return kubeconfig_path()


def down(quiet: bool = False) -> None:
    """Stop every process `up` started and remove the data directory."""
    state = State.load()
    if state is not None:
        for pid in state.pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in state.pids.values()):
            time.sleep(0.1)
        for pid in state.pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    if data_dir().exists():
        shutil.rmtree(data_dir(), ignore_errors=True)
    if not quiet:
        log("control plane stopped" if state else "no control plane was running")


def wait_established(kubectl: Path, kubeconfig: Path, crds: list[str], timeout: float = 60.0) -> None:
    """Wait until every CRD (``workflows.meson.dev``...) is Established. Polled rather than `kubectl wait`,
    which fails at once ("conditions accessor error: <nil>") when it reads a CRD created so recently that
    the API server has not yet given it a status."""
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    deadline = time.monotonic() + timeout
    waiting = list(crds)
    while waiting:
        got = subprocess.run(
            [str(kubectl), "get", "crd", waiting[0], "-o", f"jsonpath={jsonpath}"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if got.returncode == 0 and got.stdout.strip() == "True":
            waiting.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {waiting[0]} not Established after {timeout:.0f}s: {got.stderr.strip()}")
        time.sleep(0.5)
