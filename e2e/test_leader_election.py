"""Two operator replicas with --leader-elect: one leads (runs the loop), the other is a warm standby that
takes over when the leader dies, and nothing is done twice."""

from __future__ import annotations

import time
from collections import Counter

from e2e.conftest import Cluster
from e2e.helpers import apply, queue, step, uid, wait_for, wait_workflow, workflow, workflow_pods
from e2e.operator import OperatorProcess

LEASE = 6  # seconds: short, so the test's takeover is quick


def _leading(op: OperatorProcess) -> bool:
    try:
        return "meson_leader 1.0" in op.metrics()
    except OSError:
        return False


def test_standby_takes_over_when_the_leader_dies_and_nothing_runs_twice(
    cluster: Cluster, operator: OperatorProcess, core, custom, namespace: str, queues
) -> None:
    q = f"ha-{uid()}"
    queues.append(q)
    args = ("--leader-elect", "--leader-election-namespace", namespace, "--lease-duration", str(LEASE))
    operator.stop()  # the session's operator is not leader-elected: it must not schedule meanwhile
    replicas = [OperatorProcess(cluster.kubeconfig, extra_args=args) for _ in range(2)]
    try:
        for r in replicas:
            r.start()
        leader = wait_for(lambda: next((r for r in replicas if _leading(r)), None), 30, "a leader")
        standby = next(r for r in replicas if r is not leader)
        time.sleep(2)
        assert not _leading(standby), "two leaders at once"

        apply(cluster, queue(q, cpu=16))
        fan = step("fan", deps=["a"], foreach={"items": list(range(10))}, duration="3s")
        steps = [step("a", duration="2s"), fan, step("z", deps=["fan"])]
        apply(cluster, workflow("ha", q, steps), namespace=namespace)
        wait_for(lambda: len(workflow_pods(core, namespace, "ha")) >= 3, 60, "the fan-out to start")
        leader.kill()  # SIGKILL: no release, the Lease must expire
        killed = time.monotonic()
        wait_for(lambda: _leading(standby), 4 * LEASE, "the standby to take over")
        takeover = time.monotonic() - killed
        wf = wait_workflow(custom, namespace, "ha", ("Succeeded",), timeout=120)
        assert wf["status"]["phase"] == "Succeeded"
        runs = Counter(p.metadata.labels["meson.dev/instance"] for p in workflow_pods(core, namespace, "ha"))
        assert len(runs) == 12 and set(runs.values()) == {1}, runs
        print(f"standby took over {takeover:.1f}s after the leader was killed (lease {LEASE}s)")
        assert "became the leader" in standby.log()
    finally:
        for r in replicas:
            r.stop()
        operator.start()


def test_a_stopped_leader_hands_over_at_once(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    args = ("--leader-elect", "--leader-election-namespace", namespace, "--lease-duration", "30")
    operator.stop()
    replicas = [OperatorProcess(cluster.kubeconfig, extra_args=args) for _ in range(2)]
    try:
        for r in replicas:
            r.start()
        leader = wait_for(lambda: next((r for r in replicas if _leading(r)), None), 30, "a leader")
        standby = next(r for r in replicas if r is not leader)
        leader.stop()  # SIGTERM: the Lease is released, so no 30 s wait
        started = time.monotonic()
        wait_for(lambda: _leading(standby), 15, "the standby to take over a released Lease")
        print(f"handover after SIGTERM: {time.monotonic() - started:.1f}s (lease 30s)")
    finally:
        for r in replicas:
            r.stop()
        operator.start()
