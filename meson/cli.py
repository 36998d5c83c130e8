"""The `meson` command: run the operator, and operate on running workflows (like `argo suspend`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

WORKFLOW_HELP = {
    "suspend": "admit no new steps; running steps go on",
    "resume": "undo suspend",
    "stop": "start no new steps, let running ones finish, run the exit step",
    "terminate": "kill running steps now; the exit step does not run",
    "restart": "rerun the failed steps on the same object; successful steps are kept",
}
STREAMJOB_HELP = {
    "suspend": "delete the job's pods and free its quota; the spec is kept",
    "resume": "deploy it again (its replicas are admitted through the queue)",
    "restart": "clear a Failed job (restart budget exceeded) and redeploy",
    "rollback": "roll the pod template back to the last stable revision",
}


def _workflow_change(operation: str, wf: dict, clients: Any) -> dict:
    spec = wf.get("spec") or {}
    return {
        "suspend": {"suspend": True},
        "resume": {"suspend": False},
        "stop": {"shutdown": "Stop"},
        "terminate": {"shutdown": "Terminate"},
        "restart": {"restarts": int(spec.get("restarts", 0)) + 1, "shutdown": None},
    }[operation]


def _streamjob_change(operation: str, job: dict, clients: Any) -> dict:
    from meson.adapters import kube

    spec = job.get("spec") or {}
    if operation in ("suspend", "resume"):
        return {"desiredState": "Suspended" if operation == "suspend" else "Running"}
    if operation == "restart":
        return {"restarts": int(spec.get("restarts", 0)) + 1}
    status = job.get("status") or {}
    target = status.get("stableRevision")
    if not target or target == status.get("currentRevision"):
        target = status.get("previousRevision")
    if not target:
        raise SystemExit(
            f"error: streamjob {job['metadata']['name']} has no earlier revision to roll back to"
        )
    name = f"{job['metadata']['name']}-{target}"
    revision = kube.call(clients.apps.read_namespaced_controller_revision, name, job["metadata"]["namespace"])
    return {"template": revision.data["template"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meson",
        description="Meson: admission, queues and flow control for Kubernetes workflows and stream jobs.",
    )
    sub = parser.add_subparsers(dest="command")
    op = sub.add_parser("operator", help="run the operator (controllers + scheduling loop)")
    op.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, else $KUBECONFIG)")
    op.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0: off)")
    hook = op.add_argument_group("validating admission webhook")
    hook.add_argument(
        "--webhook",
        choices=("off", "in-cluster", "loopback"),
        default="off",
        help="serve the validating admission webhook. in-cluster: on every address, behind the chart's "
        "Service, with the certificate of --webhook-secret (created, rotated and injected into "
        "--webhook-configuration by the operator) or of --webhook-cert-dir (cert-manager); loopback: on "
        "127.0.0.1 with a self-signed certificate, kopf registering validate.meson.dev (development); "
        "default off (the controller still refuses invalid objects with a Valid=False condition)",
    )
    hook.add_argument("--webhook-port", type=int, default=9443, help="webhook port (default 9443)")
    hook.add_argument("--webhook-address", default="", help="in-cluster: listen address (default: all)")
    hook.add_argument("--webhook-service", default="meson-webhook", help="in-cluster: the webhook Service")
    hook.add_argument(
        "--webhook-namespace", default=None, help="in-cluster: its namespace (default: $POD_NAMESPACE)"
    )
    hook.add_argument(
        "--webhook-secret",
        default="meson-webhook-tls",
        help="in-cluster: the Secret with the CA and certificate",
    )
    hook.add_argument(
        "--webhook-configuration",
        default="meson-webhook",
        help="in-cluster: the ValidatingWebhookConfiguration whose caBundle the operator keeps",
    )
    hook.add_argument(
        "--webhook-cert-dir",
        default=None,
        help="in-cluster: serve tls.crt/tls.key from this directory (a mounted cert-manager Secret) instead "
        "of managing the Secret",
    )
    hook.add_argument(
        "--webhook-cert-validity",
        type=float,
        default=365 * 86400.0,
        metavar="SECONDS",
        help="validity of the serving certificate; renewed when a third of it remains (default 1 year)",
    )
    hook.add_argument(
        "--webhook-ca-validity",
        type=float,
        default=10 * 365 * 86400.0,
        metavar="SECONDS",
        help="validity of the operator's CA; renewed when a third of it remains (default 10 years)",
    )
    hook.add_argument(
        "--webhook-check-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often the certificate is checked and the Secret re-read (default 30)",
    )
    op.add_argument("--liveness-port", type=int, default=0, help="serve /healthz on this port (0: off)")
    op.add_argument(
        "--dashboard-port",
        type=int,
        default=0,
        help="serve the read-only web dashboard on this port (0: off; reach it with kubectl port-forward)",
    )
    op.add_argument(
        "--dashboard-address", default="127.0.0.1", help="dashboard listen address (default 127.0.0.1)"
    )
    tuning = op.add_argument_group("scheduling")
    tuning.add_argument(
        "--preempt-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long a workload waits for capacity to free by itself before it may preempt; 0 preempts at "
        "once (default 1: on Kueue's benchmark trace it cuts evictions from 5,945 to 65 and the makespan "
        "from +16%% to +1.7%% over the floor)",
    )
    tuning.add_argument(
        "--reserve-after",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a blocked queue head may be overtaken before it reserves what it needs "
        "(the anti-starvation guard; default 60)",
    )
    tuning.add_argument(
        "--global-admission-rate",
        type=float,
        default=None,
        metavar="PODS_PER_SECOND",
        help="cap on pods admitted per second over all queues, protecting the API server (default: none)",
    )
    tuning.add_argument(
        "--global-admission-burst", type=int, default=1, metavar="PODS", help="burst of that cap (default 1)"
    )
    election = op.add_argument_group("leader election (several replicas, one active)")
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="run the scheduling loop only while holding a Lease; other replicas are warm standbys",
    )
    election.add_argument(
        "--leader-election-namespace",
        default=None,
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    election.add_argument("--leader-election-id", default="meson-operator", help="name of the Lease")
    election.add_argument(
        "--lease-duration", type=float, default=10.0, metavar="SECONDS", help="Lease duration (default 10)"
    )
    op.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    wf = sub.add_parser("workflow", help="operate on a running Workflow")
    wf_sub = wf.add_subparsers(dest="operation", required=True)
    for name, help_text in WORKFLOW_HELP.items():
        p = wf_sub.add_parser(name, help=help_text)
        p.add_argument("name")
        p.add_argument("-n", "--namespace", default="default")
    sj = sub.add_parser("streamjob", help="operate on a StreamJob")
    sj_sub = sj.add_subparsers(dest="operation", required=True)
    for name, help_text in STREAMJOB_HELP.items():
        p = sj_sub.add_parser(name, help=help_text)
        p.add_argument("name")
        p.add_argument("-n", "--namespace", default="default")
    _add_view_parsers(sub)
    _add_detail_parsers(wf_sub, sj_sub)
    from meson import workflow_commands  # restart --from, cron backfill (#14)

    workflow_commands.add_parsers(sub, wf_sub)
    _add_simulate_parser(sub)
    return parser


# --- views: meson queues, meson pending ---------------------------------------------------------------


def _add_view_parsers(sub: Any) -> None:
    qs = sub.add_parser("queues", help="the queue tree: usage against guarantee and limit, pending counts")
    pd = sub.add_parser("pending", help="workloads waiting for admission, in order, with position and reason")
    pd.add_argument("queue", nargs="?", help="only this queue and the queues below it")
    pd.add_argument("-n", "--namespace", help="only workloads of this namespace (default: every namespace)")
    for p in (qs, pd):
        p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
        p.add_argument("--kubeconfig", help="kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)")


def read_snapshot(clients: Any, namespace: str | None = None) -> Any:
    """The Queues, Workflows and StreamJobs the views need, listed through the adapters."""
    from meson.adapters import kube
    from meson.views import Snapshot

    def items(plural: str, namespaced: bool) -> list[dict]:
        custom = clients.custom
        if namespaced and namespace:
            out = kube.call(custom.list_namespaced_custom_object, kube.GROUP, kube.VERSION, namespace, plural)
        else:
            out = kube.call(custom.list_cluster_custom_object, kube.GROUP, kube.VERSION, plural)
        return out.get("items") or []

    return Snapshot(
        queues=items("queues", False),
        workflows=items("workflows", True),
        streamjobs=items("streamjobs", True),
    )


def view(command: str, args: argparse.Namespace) -> int:
    """`meson queues` and `meson pending`: read, build the rows, print a table or the rows as data."""
    import json

    import yaml
    from rich.console import Console

    from meson import views
    from meson.adapters import kube

    try:
        clients = kube.Clients.from_config(kube.load_client_config(args.kubeconfig))
        snap = read_snapshot(clients, getattr(args, "namespace", None))
    except kube.ApiException as e:
        print(f"error: {e.status} {e.reason}: {(e.body or '')[:300]}", file=sys.stderr)
        return 1
    queues = views.queue_rows(snap.queues)
    if command == "queues":
        rows: list[Any] = queues
        table: Any = views.queues_table(queues, title=None)
    else:
        scope = None
        if args.queue:
            if args.queue not in {q.name for q in queues}:
                print(f"error: queue {args.queue} not found", file=sys.stderr)
                return 1
            scope = views.subtree(queues, args.queue)
        rows = views.pending_rows(snap.workflows, snap.streamjobs, scope)
        table = views.pending_table(rows, title=None)
    if args.output == "json":
        print(json.dumps(views.as_data(rows), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(views.as_data(rows), sort_keys=False), end="")
    else:
        Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0


# --- views of one object: meson workflow get|logs, meson streamjob get ----------------------------------

DETAIL_VIEWS = ("get", "logs")


def _add_detail_parsers(wf_sub: Any, sj_sub: Any) -> None:
    get = wf_sub.add_parser("get", help="the DAG as a tree: each step's phase, attempts, node and duration")
    logs = wf_sub.add_parser("logs", help="the logs of a workflow's pods (one step's with STEP)")
    sget = sj_sub.add_parser("get", help="a stream job's revisions and replica pods")
    for p in (get, logs, sget):
        p.add_argument("name")
        p.add_argument("-n", "--namespace", default="default")
        p.add_argument("--kubeconfig", help="kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)")
    for p in (get, sget):
        p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    logs.add_argument("step", nargs="?", help="only this step's pods")
    logs.add_argument("--tail", type=int, default=None, metavar="LINES", help="only the last LINES lines")


def _print(renderable: Any, data: Any, output: str) -> None:
    import json

    import yaml
    from rich.console import Console

    if output == "json":
        print(json.dumps(data, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        Console(width=None if sys.stdout.isatty() else 160).print(renderable)


def detail(args: argparse.Namespace) -> int:
    """`meson workflow get|logs NAME`, `meson streamjob get NAME`: one object read through the adapters."""
    import time

    from meson import views
    from meson.adapters import kube

    plural = "workflows" if args.command == "workflow" else "streamjobs"
    try:
        clients = kube.Clients.from_config(kube.load_client_config(args.kubeconfig))
        obj = kube.call(
            clients.custom.get_namespaced_custom_object,
            kube.GROUP,
            kube.VERSION,
            args.namespace,
            plural,
            args.name,
        )
        if args.operation == "logs":
            return workflow_logs(clients, obj, args.step, args.tail)
        if plural == "workflows":
            wf = views.workflow_detail(obj, now=time.time())
            _print(views.workflow_tree(wf), views.as_data([wf])[0], args.output)
            return 0
        from meson.stream import LABEL_STREAMJOB

        pods = kube.call(
            clients.core.list_namespaced_pod,
            args.namespace,
            label_selector=f"{LABEL_STREAMJOB}={args.name}",
            _preload_content=False,
        )
        import json

        job = views.stream_detail(obj, json.loads(pods.data)["items"])
        _print(views.stream_detail_view(job), views.as_data([job])[0], args.output)
        return 0
    except kube.ApiException as e:
        if e.status == 404:
            print(
                f"error: {args.command} {args.name} not found in namespace {args.namespace}", file=sys.stderr
            )
        else:
            print(f"error: {e.status} {e.reason}: {(e.body or '')[:300]}", file=sys.stderr)
        return 1


def workflow_logs(clients: Any, wf: dict, step: str | None, tail: int | None) -> int:
    """Each pod's logs under a header naming its step and attempt, oldest pod first. A pod whose node
    serves no logs (kwok's fake nodes run no kubelet; a node that is gone) says so instead; exit 1 when
    no pod's logs could be read."""
    from meson.adapters import kube
    from meson.workflow.pods import LABEL_RUN, LABEL_STEP, LABEL_WORKFLOW

    meta = wf["metadata"]
    steps = {s.get("name") for s in (wf.get("spec") or {}).get("steps") or []}
    steps.add(((wf.get("spec") or {}).get("onExit") or {}).get("name", "on-exit"))
    if step is not None and step not in steps:
        print(
            f"error: workflow {meta['name']} has no step {step} (steps: {', '.join(sorted(steps))})",
            file=sys.stderr,
        )
        return 1
    selector = f"{LABEL_WORKFLOW}={meta['name']}" + (f",{LABEL_STEP}={step}" if step else "")
    pods = kube.call(clients.core.list_namespaced_pod, meta["namespace"], label_selector=selector).items
    if not pods:
        print(
            f"no pods of workflow {meta['name']}"
            + (f" step {step}" if step else "")
            + " exist (not started yet, or deleted)",
            file=sys.stderr,
        )
        return 1
    pods.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
    read = 0
    for pod in pods:
        labels = pod.metadata.labels or {}
        where = f"step {labels.get(LABEL_STEP, '?')}, run {labels.get(LABEL_RUN, '?')}, {pod.status.phase}"
        print(f"==> {pod.metadata.name} ({where}) <==")
        containers = [c.name for c in pod.spec.containers]
        for container in containers:
            if len(containers) > 1:
                print(f"--- container {container}")
            try:
                # One call, not kube.call: a node that serves no logs answers the same on every retry.
                text = clients.core.read_namespaced_pod_log(
                    pod.metadata.name, pod.metadata.namespace, container=container, tail_lines=tail
                )
            except kube.ApiException as e:
                reason = (e.body or e.reason or "").strip()
                print(
                    f"(no logs: the API server could not get them from node {pod.spec.node_name or '-'}: "
                    f"{e.status} {_api_message(reason)[:200]}; pods on kwok's fake nodes have none)"
                )
                continue
            read += 1
            print(text, end="" if text.endswith("\n") or not text else "\n")
    return 0 if read else 1


def _api_message(body: str) -> str:
    """The message of a Kubernetes Status body, else the body."""
    import json

    try:
        return str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        return body


# --- meson simulate ------------------------------------------------------------------------------------


def _add_simulate_parser(sub: Any) -> None:
    sim = sub.add_parser(
        "simulate",
        help="what-if: replay a trace or the live cluster's work under the Queues and a changed set",
        description="Replay work with the operator's scheduling core under the current Queues (before) and, "
        "with -f, under them changed by a file (after); per queue: time to admission p50/p90, utilisation "
        "of its guarantee, borrowed share of its usage, preemptions. Trace format: see meson/simulate.py "
        "and the README (CSV or JSON: arrival, queue, resources, duration, priority).",
    )
    sim.add_argument(
        "--trace", metavar="FILE", help="a trace file (CSV or JSON); default: the live cluster's work"
    )
    sim.add_argument(
        "-f", "--filename", metavar="QUEUES.yaml", help="Queues that replace (by name) or add to the current"
    )
    sim.add_argument(
        "--queues", metavar="QUEUES.yaml", help="the current Queues from this file instead of the cluster"
    )
    sim.add_argument(
        "--default-duration",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="live work with no expectedDurationSeconds runs this long (default 600)",
    )
    sim.add_argument("-o", "--output", choices=("table", "json"), default="table")
    sim.add_argument("--kubeconfig", help="kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)")


def simulate(args: argparse.Namespace) -> int:
    """`meson simulate`: read (files first, so a bad one stops everything before any API call), replay
    before and after, print the table."""
    import json
    import time

    from meson import simulate as sim

    t0 = time.monotonic()
    try:
        trace = sim.load_trace(args.trace) if args.trace else None
        changes = sim.load_queues(args.filename) if args.filename else None
        current = sim.load_queues(args.queues) if args.queues else None
        start, running = float("-inf"), []
        if current is None or trace is None:
            from meson.adapters import kube

            clients = kube.Clients.from_config(kube.load_client_config(args.kubeconfig))
            snap = read_snapshot(clients)
            if current is None:
                current = snap.queues
            if trace is None:
                # Only Meson's pods (they carry their queue): the rest of the cluster is not replayed.
                pods = kube.call(
                    clients.core.list_pod_for_all_namespaces,
                    label_selector="meson.dev/queue",
                    _preload_content=False,
                )
                classes = kube.call(clients.scheduling.list_priority_class).items
                priorities = {c.metadata.name: int(c.value) for c in classes}
                priorities[""] = next((int(c.value) for c in classes if c.global_default), 0)
                work = sim.live_work(
                    snap.workflows,
                    snap.streamjobs,
                    json.loads(pods.data)["items"],
                    priorities,
                    time.time(),
                    args.default_duration,
                )
                trace, running, start = work.pending, work.running, work.start
        t_read = time.monotonic()
        before = sim.replay(current, trace, running, start)
        after = (
            sim.replay(sim.merge(current, changes), trace, running, start) if changes is not None else None
        )
    except sim.InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the API (kube.ApiException) or no kubeconfig: not a trace or queue file problem
        from meson.adapters import kube

        if isinstance(e, kube.ApiException):
            print(f"error: {e.status} {e.reason}: {(e.body or '')[:300]}", file=sys.stderr)
            return 1
        raise
    if args.output == "json":
        print(json.dumps(sim.as_data(before, after), indent=2))
        return 0
    from rich.console import Console

    what = (
        f"trace {args.trace}"
        if args.trace
        else f"the live cluster: {len(trace)} pending, {len(running)} running"
    )
    console = Console(width=None if sys.stdout.isatty() else 200)
    timing = f"read {t_read - t0:.1f} s, replayed {time.monotonic() - t_read:.1f} s"
    console.print(f"replayed {what} ({timing})")
    console.print(sim.compare_table(before, after))
    return 0


def operate(plural: str, operation: str, name: str, namespace: str) -> int:
    """Read the object, then patch it with the resourceVersion read: a concurrent change is a 409, and
    the change is computed again from the fresh object (nothing is lost or applied twice)."""
    from meson.adapters import kube
    from meson.workflow_commands import patch_spec

    clients = kube.Clients.from_config(kube.load_client_config())
    change = _workflow_change if plural == "workflows" else _streamjob_change
    code = patch_spec(
        plural, name, namespace, lambda obj: change(operation, obj, clients), clients, operation
    )
    if code == 0:
        print(f"{plural.rstrip('s')}.meson.dev/{name} {operation}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "operator":
        from meson import operator
        from meson.controllers.scheduling import Tuning

        return operator.run(
            tuning=Tuning(
                preempt_after=args.preempt_after,
                reserve_after=args.reserve_after,
                global_rate=args.global_admission_rate,
                global_burst=args.global_admission_burst,
            ),
            kubeconfig=args.kubeconfig,
            metrics_port=args.metrics_port,
            webhook=args.webhook,
            webhook_port=args.webhook_port,
            webhook_options={
                "webhook_address": args.webhook_address,
                "webhook_service": args.webhook_service,
                "webhook_namespace": args.webhook_namespace,
                "webhook_secret": args.webhook_secret,
                "webhook_configuration": args.webhook_configuration,
                "webhook_cert_dir": args.webhook_cert_dir,
                "webhook_cert_validity": args.webhook_cert_validity,
                "webhook_ca_validity": args.webhook_ca_validity,
                "webhook_check_interval": args.webhook_check_interval,
            },
            liveness_port=args.liveness_port or None,
            dashboard=(args.dashboard_address, args.dashboard_port) if args.dashboard_port else None,
            verbose=args.verbose,
            election=(
                {
                    "namespace": args.leader_election_namespace
                    or os.environ.get("POD_NAMESPACE")
                    or "default",
                    "name": args.leader_election_id,
                    "lease_duration": args.lease_duration,
                }
                if args.leader_elect
                else None
            ),
        )
    if args.command in ("workflow", "streamjob") and args.operation in DETAIL_VIEWS:
        return detail(args)
    if getattr(args, "handler", None) is not None:  # commands of meson.workflow_commands
        return args.handler(args)
    if args.command == "workflow":
        return operate("workflows", args.operation, args.name, args.namespace)
    if args.command == "streamjob":
        return operate("streamjobs", args.operation, args.name, args.namespace)
    if args.command in ("queues", "pending"):
        return view(args.command, args)
    if args.command == "simulate":
        return simulate(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
