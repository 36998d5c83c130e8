"""One tenant's bad object never stops the scheduler for everyone (issue: isolation and hardening).

Each poison object is created while another tenant's workflows run, with the webhook off (the controller
must refuse or isolate it) and on (the webhook refuses what it can at apply time). Also: the `pods` quota,
never-fitting steps and gangs, a missing PriorityClass, a forged status, and SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator

import pytest
import yaml

from e2e.conftest import Cluster
from e2e.helpers import (
    GROUP,
    VERSION,
    apply,
    get_workflow,
    queue,
    step,
    steps_by_instance,
    uid,
    wait_for,
    wait_workflow,
    workflow,
    workflow_pods,
)
from e2e.operator import OperatorProcess
from e2e.test_workflows import Sampler, live

WEBHOOK = "validate.meson.dev"


def _webhook_serving(cluster: Cluster) -> bool:
    cyclic = workflow("probe", "default", [step("a", deps=["b"]), step("b", deps=["a"])])
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", "default", "-f", "-", input=yaml.safe_dump(cyclic), check=False
    )
    return "cycle" in result.stderr


@pytest.fixture(params=["webhook-off", "webhook-on"])
def meson(request, cluster: Cluster, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The operator with the webhook off (the session's) or on (swapped in: never two at once)."""
    if request.param == "webhook-off":
        yield operator
        return
    operator.stop()
    proc = OperatorProcess(cluster.kubeconfig, webhook="loopback")
    proc.start()
    try:
        wait_for(lambda: _webhook_serving(cluster), 90, "the webhook to serve", interval=1)
        yield proc
    finally:
        proc.stop()
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            cluster.kubectl("delete", kind, WEBHOOK, "--ignore-not-found", check=False)
        operator.start()


def _condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def _apply_or_refused(cluster: Cluster, obj: dict, namespace: str | None, webhook: bool, error: str) -> bool:
    """Apply ``obj``; with the webhook on it must be refused with ``error``. True if it was created."""
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    result = cluster.kubectl(*args, input=yaml.safe_dump(obj), check=False)
    if webhook:
        assert result.returncode != 0, f"webhook accepted {obj['metadata']['name']}"
        assert error in result.stderr, result.stderr
        return False
    assert result.returncode == 0, result.stderr
    return True


def _cron(name: str, schedule: str, **spec) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CronWorkflow",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "workflowTemplate": {"spec": {"queue": "default", "steps": [step("only")]}},
            **spec,
        },
    }


def test_poison_objects_leave_other_tenants_running(
    meson: OperatorProcess, cluster: Cluster, core, custom, namespace: str, queues
) -> None:
    webhook = meson.webhook == "loopback"
    good, orphan, cyc_a, cyc_b = (f"{p}-{uid()}" for p in ("good", "orphan", "cyc-a", "cyc-b"))
    queues += [good, orphan, cyc_a, cyc_b]
    apply(cluster, queue(good, cpu=64))
    # The victims: chains of three steps in a healthy queue, started before the poison arrives.
    names = [f"tenant-{i}" for i in range(4)]
    for name in names:
        chain = [step("a", duration="1s"), step("b", deps=["a"], duration="1s"), step("c", deps=["b"])]
        apply(cluster, workflow(name, good, chain), namespace=namespace)
    log_mark = len(meson.log())

    # Poison: bad cron schedule and time zone.
    bad_schedule = _apply_or_refused(
        cluster, _cron("bad-schedule", "61 * * * *"), namespace, webhook, "spec.schedule"
    )
    bad_zone = _apply_or_refused(
        cluster, _cron("bad-zone", "*/5 * * * *", timeZone="Mars/Olympus"), namespace, webhook, "Mars/Olympus"
    )
    # Poison: a misspelt pod-spec field (the dry run with strict field validation names it).
    typo = workflow("typo", good, [step("x")])
    typo["spec"]["steps"][0]["template"]["spec"]["containers"][0]["resorces"] = {"requests": {"cpu": "1"}}
    typo_made = _apply_or_refused(cluster, typo, namespace, webhook, "resorces")
    # Poison: a queue whose parent does not exist, and a parent cycle built in two steps.
    apply(cluster, queue(orphan, cpu=4, parent=f"nowhere-{uid()}"))
    apply(cluster, workflow("in-orphan", orphan, [step("x")]), namespace=namespace)
    apply(cluster, queue(cyc_a, cpu=4, parent=cyc_b))
    cycle_made = _apply_or_refused(cluster, queue(cyc_b, cpu=4, parent=cyc_a), None, webhook, "cycle")

    for name in names:
        wait_workflow(custom, namespace, name, ("Succeeded",), timeout=120)

    def cron_invalid(name: str) -> dict | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "cronworkflows", name)
        cond = _condition(obj, "Valid")
        return cond if cond and cond["status"] == "False" else None

    if bad_schedule:
        assert "spec.schedule" in wait_for(lambda: cron_invalid("bad-schedule"), 30, "Valid=False")["message"]
    if bad_zone:
        assert "Mars/Olympus" in wait_for(lambda: cron_invalid("bad-zone"), 30, "Valid=False")["message"]
    if typo_made:
        wf = wait_workflow(custom, namespace, "typo", ("Failed",), timeout=30)
        assert "resorces" in _condition(wf, "Valid")["message"]
        assert workflow_pods(core, namespace, "typo") == []
    if bad_schedule or bad_zone:
        cron_pods = core.list_namespaced_pod(namespace, label_selector="meson.dev/cronworkflow").items
        assert cron_pods == [], "an invalid CronWorkflow made pods"

    def queue_inactive(name: str) -> dict | None:
        obj = custom.get_cluster_custom_object(GROUP, VERSION, "queues", name)
        cond = _condition(obj, "Active")
        return cond if cond and cond["status"] == "False" else None

    assert (
        "does not exist" in wait_for(lambda: queue_inactive(orphan), 30, "orphan queue inactive")["message"]
    )
    if cycle_made:
        for name in (cyc_a, cyc_b):
            assert "cycle" in wait_for(lambda n=name: queue_inactive(n), 30, f"{name} inactive")["message"]
    assert (
        _condition(custom.get_cluster_custom_object(GROUP, VERSION, "queues", good), "Active")["status"]
        == "True"
    )
    # The workflow in the disabled queue waits, and says why; it has no pod.
    reason = wait_for(
        lambda: (steps_by_instance(get_workflow(custom, namespace, "in-orphan")).get("x") or {}).get(
            "message"
        ),
        30,
        "a pending reason on the step in the disabled queue",
    )
    assert orphan in reason and "does not exist" in reason, reason
    assert workflow_pods(core, namespace, "in-orphan") == []
    log = meson.log()[log_mark:]
    assert "scheduling cycle failed" not in log, log[-4000:]
    tracebacks = re.findall(r"Traceback", log)
    assert len(tracebacks) <= 4, f"{len(tracebacks)} tracebacks: a poison object is logged every cycle"
    if bad_schedule or bad_zone:
        cluster.kubectl(
            "delete", "cronworkflow", "bad-schedule", "bad-zone", "-n", namespace, "--ignore-not-found"
        )


def test_largest_fanout_status_fits(
    operator: OperatorProcess, cluster: Cluster, custom, namespace: str, queues
) -> None:
    """A foreach at its documented maximum (10,000 items) with a 40-character step name: the status is
    written (it fits in etcd) and says how far the fan-out got."""
    q = f"big-{uid()}"
    queues.append(q)
    apply(cluster, {**queue(q, cpu=1), "spec": {"quota": {"pods": {"guaranteed": 2}}}})
    name = "s" * 40
    fanout = step(name, foreach={"items": list(range(10000))}, duration="100ms")
    apply(cluster, workflow("huge", q, [fanout]), namespace=namespace)

    def progressed() -> dict | None:
        wf = get_workflow(custom, namespace, "huge")
        counts = (wf.get("status") or {}).get("counts") or {}
        return wf if counts.get("total") == 10000 and counts.get("succeeded", 0) >= 4 else None

    wf = wait_for(progressed, 120, "the 10,000-item fan-out to report progress")
    size = len(json.dumps(wf["status"]))
    assert size < 1024 * 1024, f"status of {size} bytes"
    assert "too large" not in operator.log()
    cluster.kubectl("delete", "workflow", "huge", "-n", namespace, "--wait=false")


def test_pods_quota_is_enforced(
    operator: OperatorProcess, cluster: Cluster, core, custom, namespace: str, queues
) -> None:
    q = f"pods-{uid()}"
    queues.append(q)
    apply(cluster, {**queue(q), "spec": {"quota": {"pods": {"guaranteed": 5}}}})
    steps = [
        step("fan", foreach={"items": list(range(16))}, duration="1s"),
        step("gang", parallelism=2, duration="1s"),
    ]
    apply(cluster, workflow("five", q, steps), namespace=namespace)
    peak = 0

    def probe() -> str | None:
        nonlocal peak
        running = len(live(workflow_pods(core, namespace, "five")))
        peak = max(peak, running)
        return f"{running} pods live in a queue with pods: 5" if running > 5 else None

    with Sampler(probe) as sampler:
        wait_workflow(custom, namespace, "five", ("Succeeded",), timeout=120)
    assert sampler.violations == [], sampler.violations[:5]
    assert peak == 5, f"peak {peak}: the quota was never reached"


def test_unfittable_step_and_gang_create_no_pod(
    operator: OperatorProcess, cluster: Cluster, core, custom, namespace: str, queues
) -> None:
    q = f"mem-{uid()}"
    queues.append(q)
    # The queue limits only memory: its quota says nothing about CPU, yet no node has 10,000 CPUs.
    apply(cluster, {**queue(q), "spec": {"quota": {"memory": {"guaranteed": "1Ti"}}}})
    apply(
        cluster,
        workflow("huge-cpu", q, [step("x", cpu="10000")]),
        workflow("huge-gang", q, [step("g", cpu="20", parallelism=500)]),
        namespace=namespace,
    )
    for name, inst in (("huge-cpu", "x"), ("huge-gang", "g")):
        message = wait_for(
            lambda n=name, i=inst: (steps_by_instance(get_workflow(custom, namespace, n)).get(i) or {}).get(
                "message"
            ),
            30,
            f"a reason on {name}",
        )
        assert "never fits" in message, message
    time.sleep(2)
    assert workflow_pods(core, namespace, "huge-cpu") == []
    assert workflow_pods(core, namespace, "huge-gang") == []


def test_missing_priority_class_holds_the_step_until_it_exists(
    operator: OperatorProcess, cluster: Cluster, core, custom, namespace: str, queues
) -> None:
    q, pc = f"prio-{uid()}", f"meson-e2e-late-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=8))
    apply(cluster, workflow("late", q, [step("x")], priorityClassName=pc), namespace=namespace)
    message = wait_for(
        lambda: (steps_by_instance(get_workflow(custom, namespace, "late")).get("x") or {}).get("message"),
        30,
        "a reason on the step",
    )
    assert pc in message and "not found" in message, message
    assert workflow_pods(core, namespace, "late") == []
    status = custom.get_cluster_custom_object(GROUP, VERSION, "queues", q).get("status") or {}
    assert status.get("admitted", 0) == 0 and not (status.get("usage") or {}).get("cpu"), status
    cluster.kubectl("create", "priorityclass", pc, "--value=100")
    try:
        wait_workflow(custom, namespace, "late", ("Succeeded",), timeout=60)
    finally:
        cluster.kubectl("delete", "priorityclass", pc, "--wait=false", check=False)


def test_forged_status_is_corrected_and_no_step_is_skipped(
    operator: OperatorProcess, cluster: Cluster, core, custom, namespace: str, queues
) -> None:
    q = f"forge-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=8))
    chain = [step("a", duration="3s"), step("b", deps=["a"], duration="1s"), step("c", deps=["b"])]
    apply(cluster, workflow("forged", q, chain), namespace=namespace)
    wait_for(lambda: workflow_pods(core, namespace, "forged"), 30, "step a to start")
    forged = {
        "status": {
            "phase": "Succeeded",
            "steps": [{"name": n, "phase": "Succeeded", "run": 1, "attempts": 1} for n in ("a", "b", "c")],
        }
    }
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "workflows", "forged", forged)
    wait_for(
        lambda: (get_workflow(custom, namespace, "forged").get("status") or {}).get("phase") == "Running",
        10,
        "the forged status to be corrected",
    )
    wait_workflow(custom, namespace, "forged", ("Succeeded",), timeout=60)
    ran = {p.metadata.labels["meson.dev/step"] for p in workflow_pods(core, namespace, "forged")}
    assert ran == {"a", "b", "c"}, f"steps that ran: {ran}"


GRACE = 25  # seconds an operator may take to stop after SIGTERM


def test_sigterm_stops_within_seconds_and_a_restart_duplicates_nothing(
    operator: OperatorProcess, cluster: Cluster, core, custom, namespace: str, queues
) -> None:
    q = f"term-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=64))
    apply(
        cluster,
        workflow(
            "busy",
            q,
            [step("fan", foreach={"items": list(range(60))}, duration="2s"), step("end", deps=["fan"])],
        ),
        namespace=namespace,
    )
    wait_for(lambda: len(workflow_pods(core, namespace, "busy")) >= 10, 30, "the fan-out to start")
    assert operator.proc is not None
    started = time.monotonic()
    operator.proc.send_signal(signal.SIGTERM)
    try:
        # Within the pod's default grace period (30 s), with room for a machine under heavy load
        # (typically ~1 s; printed below).
        operator.proc.wait(GRACE)
    except Exception:
        operator.kill()
        raise AssertionError(f"still running {GRACE} s after SIGTERM:\n{operator.log()[-3000:]}") from None
    stopped_in = time.monotonic() - started
    operator.start()
    wait_workflow(custom, namespace, "busy", ("Succeeded",), timeout=120)
    pods = workflow_pods(core, namespace, "busy")
    per_instance: dict[str, int] = {}
    for p in pods:
        per_instance[p.metadata.labels["meson.dev/instance"]] = (
            per_instance.get(p.metadata.labels["meson.dev/instance"], 0) + 1
        )
    assert len(per_instance) == 61 and set(per_instance.values()) == {1}, per_instance
    print(f"operator stopped {stopped_in:.1f}s after SIGTERM")


def test_sigterm_removes_the_webhook_registration(cluster: Cluster, operator: OperatorProcess) -> None:
    operator.stop()
    proc = OperatorProcess(cluster.kubeconfig, webhook="loopback")
    proc.start()
    try:
        wait_for(lambda: _webhook_serving(cluster), 90, "the webhook to serve", interval=1)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(GRACE)
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            got = cluster.kubectl("get", kind, WEBHOOK, check=False)
            assert got.returncode != 0 and "NotFound" in got.stderr, f"{kind} left behind"
    finally:
        proc.stop()
        operator.start()
