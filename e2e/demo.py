"""`make demo`: the scheduler at work on the embedded real control plane, in about two minutes.

1. Brings up the control plane (6 kwok nodes of 8.5 CPUs; ``$MESON_CLUSTER_DIR`` is honoured) and
   installs the chart with the real ``helm`` (CRDs, ServiceAccount, ClusterRole, the Lease's Role).
2. Runs the operator as two local processes with the Deployment's own arguments (leader election on the
   chart's Lease) and the chart ServiceAccount's token: one leads, the other is a warm standby. (The
   Deployment's pods are stand-ins: kwok nodes run no containers.)
3. Plays the scenario of examples/demo/ against four tenant queues sharing 48 CPUs: team-b borrows the idle
   cluster; team-a and ingest reclaim their guarantees (team-b's borrowed steps are preempted and requeue);
   ingest is admitted at its rate limit (2 pods/s); an urgent workflow jumps to the head of team-a; a
   stream job deploys and is scaled from 3 to 6 replicas; then the leader is killed (SIGKILL) and the
   standby takes over when the Lease expires.
4. Shows it live (queue usage bars, pending positions, workflow progress, stream replicas, who leads), or
   as periodic plain snapshots without a terminal, ends with a summary and leaves the cluster up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from rich.table import Table
from rich.text import Text

from e2e.cluster import build, controlplane, versions
from e2e.demo_screen import Replica, Screen
from e2e.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "examples" / "demo"
RELEASE, SYSTEM_NS, DEMO_NS = "meson", "meson-system", "meson-demo"
NODES = 6
# 8 one-CPU steps per node, plus room for the chart's stand-in operator pod (100m).
NODE_SHAPE = controlplane.NodeShape(cpu="8500m", memory="64Gi")
LEASE = 10  # seconds: the chart's leaderElection.leaseDurationSeconds for the demo (default 10)
STREAM = "clickstream"
WORKFLOWS = ("team-b-backfill", "team-a-reports", "ingest-files", "team-a-hotfix")
TIMEOUT = 240  # seconds for the scenario; it takes about 90


@dataclass
class Kube:
    kubectl: str
    helm: str
    kubeconfig: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def run(self, tool: str, *args: str, check: bool = True, input: str | None = None) -> str:
        binary = self.kubectl if tool == "kubectl" else self.helm
        out = subprocess.run(
            [binary, *args], capture_output=True, text=True, env=self.env(), input=input, check=False
        )
        if check and out.returncode != 0:
            raise SystemExit(f"{tool} {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout

    def kubectl_(self, *args: str, **kw) -> str:
        return self.run("kubectl", *args, **kw)


@dataclass
class LeaderWatch:
    """Polls each replica's meson_leader metric every 0.2 s: who leads, and when a takeover happened."""

    ops: list[OperatorProcess]
    replicas: list[Replica]
    killed_at: float | None = None
    takeover_at: float | None = None
    new_leader: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def leader(self) -> int | None:
        return next((i for i, r in enumerate(self.replicas) if r.state == "leader"), None)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for i, (op, rep) in enumerate(zip(self.ops, self.replicas, strict=True)):
                if op.proc is None or op.proc.poll() is not None:
                    if rep.state != "killed":
                        rep.state = "starting" if op.proc is None else "killed"
                    continue
                rep.pid = op.proc.pid
                try:
                    leading = "meson_leader 1.0" in op.metrics()
                except OSError:
                    continue
                rep.state = "leader" if leading else "standby"
                if leading and self.killed_at is not None and self.takeover_at is None:
                    self.takeover_at, self.new_leader = time.monotonic(), i


def _chart_args(kube: Kube) -> tuple[str, ...]:
    """The Deployment's own `meson operator` arguments, less the ports (each local process gets its own)."""
    deployment = json.loads(kube.kubectl_("get", "deployment", RELEASE, "-n", SYSTEM_NS, "-o", "json"))
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"][1:]
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--metrics-port", "--liveness-port", "--webhook", "--webhook-port"):
            skip = True
            continue
        out.append(a)
    return tuple(out)


def _service_account_kubeconfig(kube: Kube, path: Path) -> Path:
    """A kubeconfig with a token of the chart's ServiceAccount: the operators run with exactly the chart's
    RBAC."""
    token = kube.kubectl_("create", "token", RELEASE, "-n", SYSTEM_NS, "--duration", "2h").strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    ca = server.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        server = {**server, "certificate-authority": str(kube.kubeconfig.parent / ca)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "meson-demo", "cluster": server}],
        "users": [{"name": "meson-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "meson-demo", "user": "meson-operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _reset(kube: Kube) -> None:
    """A previous run's workflows, stream job and pods go, so this run starts from an empty cluster."""
    if kube.kubectl_("get", "namespace", DEMO_NS, check=False, input=None).strip():
        kube.kubectl_("delete", "workflows,streamjobs", "--all", "-n", DEMO_NS, "--timeout=60s", check=False)
        kube.kubectl_(
            "delete",
            "pods",
            "--all",
            "-n",
            DEMO_NS,
            "--grace-period=0",
            "--force",
            "--timeout=60s",
            check=False,
        )
    kube.kubectl_("delete", "lease", RELEASE, "-n", SYSTEM_NS, "--ignore-not-found", check=False)


def _preemptions(core, baseline: dict[str, int]) -> int:
    events = core.list_namespaced_event(DEMO_NS, field_selector="reason=StepPreempted").items
    return sum((e.count or 1) - baseline.get(e.metadata.uid, 0) for e in events)


def _seconds(status: dict) -> float | None:
    try:
        start = datetime.fromisoformat(status["startedAt"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(status["finishedAt"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError):
        return None
    return (end - start).total_seconds()


def main() -> int:
    begun = time.monotonic()
    screen = Screen()
    screen.say("bringing up the embedded control plane (built on first use) ...")
    kubeconfig = controlplane.up(NODES, NODE_SHAPE)
    bins = build.ensure_all()
    kube = Kube(str(bins["kubectl"]), str(bins["helm"]), kubeconfig)
    screen.say(
        f"Kubernetes {versions.KUBERNETES} up: {NODES} kwok nodes, 48 CPUs for work; KUBECONFIG={kubeconfig}"
    )
    _reset(kube)
    kube.kubectl_("create", "namespace", SYSTEM_NS, check=False)
    kube.run(
        "helm", "upgrade", "--install", RELEASE, str(REPO / "helm" / "meson"), "-n", SYSTEM_NS,
        "--set", f"leaderElection.leaseDurationSeconds={LEASE}",
        "--set-string", "webhook.mode=off",
        # kwok would "complete" the Deployment's stand-in pods at once and the ReplicaSet would loop.
        "--set-string", r"podAnnotations.sim\.meson\.dev/keep-running=true",
        "--wait", "--timeout", "120s",
    )  # fmt: skip
    controlplane.wait_established(
        bins["kubectl"],
        kubeconfig,
        [f"{p}.meson.dev" for p in ("workflows", "cronworkflows", "queues", "streamjobs")],
    )
    screen.say(f"helm upgrade --install {RELEASE} helm/meson -n {SYSTEM_NS}: CRDs, RBAC, the Lease's Role")
    kube.kubectl_("apply", "-f", str(SCENARIO / "00-namespace.yaml"), "-f", str(SCENARIO / "10-queues.yaml"))
    screen.say(
        "kubectl apply -f examples/demo/10-queues.yaml: demo (48 CPU) > team-a, team-b, ingest, streaming"
    )

    token_kubeconfig = _service_account_kubeconfig(
        kube, controlplane.data_dir() / "meson-operator.kubeconfig"
    )
    args = _chart_args(kube)
    env = {"KUBECONFIG": str(token_kubeconfig)}  # kopf's own login reads $KUBECONFIG
    ops = [OperatorProcess(token_kubeconfig, extra_args=args, env=env) for _ in range(2)]
    replicas = [Replica("replica-1"), Replica("replica-2")]
    screen.replicas = replicas
    watch = LeaderWatch(ops, replicas)
    from kubernetes import client, config

    from meson.adapters import kube as adapters
    from meson.cli import read_snapshot

    clients = adapters.Clients.from_config(adapters.load_client_config(str(kubeconfig)))
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    baseline = {e.metadata.uid: e.count or 1 for e in core.list_namespaced_event(DEMO_NS).items}
    ok = False
    try:
        for op in ops:
            op.start(wait=False)
        watch.start()
        wait_until(lambda: watch.leader() is not None, 60, "a leader")
        lead = watch.leader()
        screen.say(
            f"two operator processes, chart arguments ({' '.join(args)}), the chart ServiceAccount's token: "
            f"{replicas[lead].label} leads, the other is a warm standby",
            "green",
        )
        screen.start_live()
        scenario_started = time.monotonic()
        ok = _scenario(kube, screen, watch, ops, clients, core, baseline, read_snapshot)
        screen.scenario_seconds = time.monotonic() - scenario_started
    finally:
        watch.stop()
        screen.stop_live()
        for op in ops:
            op.stop()
    _summary(kube, screen, watch, ok, time.monotonic() - begun, ops)
    return 0 if ok else 1


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _scenario(kube, screen, watch, ops, clients, core, baseline, read_snapshot) -> bool:
    t0 = time.monotonic()

    def apply(name: str) -> Callable[[], None]:
        return lambda: kube.kubectl_("apply", "-f", str(SCENARIO / name))

    def scale() -> None:
        kube.kubectl_("scale", f"streamjob/{STREAM}", "-n", DEMO_NS, "--replicas=6")

    def kill() -> None:
        i = watch.leader()
        if i is None:
            return
        ops[i].kill()
        watch.killed_at = time.monotonic()
        watch.replicas[i].state = "killed"

    # (seconds after the start, or after the takeover when negative), action, narration, style
    steps: list[tuple[float, Callable[[], None], str, str]] = [
        (0, apply("20-team-b-backfill.yaml"),
         "team-b submits 40 x 1-CPU steps: nobody else asks, so it borrows the idle cluster", ""),
        (6, lambda: (apply("30-team-a-reports.yaml")(), apply("40-ingest.yaml")()),
         "team-a (24 steps) and ingest (30 steps) arrive: they reclaim their guarantees, borrowed team-b "
         "steps are preempted and requeue; ingest is admitted at its rate limit, 2 pods/s", "yellow"),
        (14, apply("50-team-a-hotfix.yaml"),
         "team-a-hotfix (PriorityClass demo-urgent) takes position 1 in team-a and preempts lower-priority "
         "team-a-reports steps to make room (withinQueue: LowerPriority)",
         "magenta"),
        (18, apply("60-streamjob.yaml"),
         "stream job clickstream deploys 3 replicas through queue streaming", "cyan"),
        (26, kill, "SIGKILL the leader mid-run: no release, the standby takes over when the Lease expires; "
         "meanwhile nothing new is admitted (running pods go on)", "bold red"),
        (-3, scale, f"kubectl scale streamjob/{STREAM} --replicas=6: the new leader admits 3 more", "cyan"),
    ]  # fmt: skip
    announced_takeover = restarted = False
    next_read = 0.0
    while True:
        now = time.monotonic() - t0
        while steps:
            at, action, caption, style = steps[0]
            if at >= 0 and at > now:
                break
            if at < 0 and (watch.takeover_at is None or time.monotonic() - watch.takeover_at < -at):
                break
            steps.pop(0)
            action()
            screen.say(caption, style)
        if watch.takeover_at is not None and not announced_takeover:
            announced_takeover = True
            took = watch.takeover_at - watch.killed_at
            screen.say(
                f"{watch.replicas[watch.new_leader].label} took over {took:.1f}s after the kill "
                f"(lease {LEASE}s); admissions resume",
                "bold green",
            )
        if announced_takeover and not restarted and time.monotonic() - watch.takeover_at > 1:
            restarted = True
            dead = next(i for i, r in enumerate(watch.replicas) if r.state == "killed")
            ops[dead].start(wait=False)
            watch.replicas[dead].state = "starting"
            screen.say(f"{watch.replicas[dead].label} restarted (as a pod would be): a new warm standby")
        if now >= next_read:
            next_read = now + 1.0
            snap = read_snapshot(clients, None)
            snap.workflows = [w for w in snap.workflows if w["metadata"]["namespace"] == DEMO_NS]
            snap.streamjobs = [s for s in snap.streamjobs if s["metadata"]["namespace"] == DEMO_NS]
            screen.preemptions = _preemptions(core, baseline)
            screen.refresh(snap)
            if not steps and announced_takeover and _done(snap):
                screen.say("every workflow Succeeded and the stream job runs 6 ready replicas", "bold green")
                return True
        if now > TIMEOUT:
            screen.say(f"not finished after {TIMEOUT}s", "bold red")
            return False
        time.sleep(0.25)


def _done(snap) -> bool:
    phases = {w["metadata"]["name"]: (w.get("status") or {}).get("phase") for w in snap.workflows}
    stream = next((s for s in snap.streamjobs if s["metadata"]["name"] == STREAM), {})
    ready = (stream.get("status") or {}).get("readyReplicas")
    return all(phases.get(n) == "Succeeded" for n in WORKFLOWS) and ready == 6


def _summary(kube: Kube, screen: Screen, watch: LeaderWatch, ok: bool, total: float, ops) -> None:
    console = screen.console
    console.print(screen.render(narration=False))
    table = Table(title="Summary", title_justify="left")
    for col in ("what", "result"):
        table.add_column(col)
    workflows = json.loads(kube.kubectl_("get", "workflows", "-n", DEMO_NS, "-o", "json"))["items"]
    for wf in sorted(workflows, key=lambda w: w["metadata"]["name"]):
        status = wf.get("status") or {}
        took = _seconds(status)
        table.add_row(
            f"workflow {wf['metadata']['name']} ({wf['spec']['queue']})",
            f"{status.get('phase')} {status.get('progress', '')}" + (f" in {took:.0f}s" if took else ""),
        )
    table.add_row("steps preempted (Events StepPreempted)", str(screen.preemptions))
    if watch.takeover_at is not None and watch.killed_at is not None:
        took = watch.takeover_at - watch.killed_at
        table.add_row("leader failover", f"standby led {took:.1f}s after SIGKILL (lease {LEASE}s)")
    else:
        table.add_row("leader failover", "did not happen")
    table.add_row("demo duration", f"{total:.0f}s (the scenario {screen.scenario_seconds:.0f}s of it)")
    table.add_row("outcome", Text("OK", "bold green") if ok else Text("FAILED", "bold red"))
    console.print(table)
    console.print(f"operator logs: {', '.join(str(op.log_path) for op in ops)}")
    console.print("The control plane keeps running (the operators are stopped):")
    console.print(f"  export KUBECONFIG={kube.kubeconfig}")
    console.print("  .venv/bin/meson queues; .venv/bin/meson pending; kubectl get mwf,msj -n meson-demo")
    console.print("  .venv/bin/python -m e2e.cluster down   # stop it")


if __name__ == "__main__":
    sys.exit(main())
