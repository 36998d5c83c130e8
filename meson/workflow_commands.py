"""`meson workflow restart --from STEP -p k=v` and `meson cron backfill`: the workflow commands of #14, kept
out of :mod:`meson.cli` (which only hooks them in with :func:`add_parsers`)."""

from __future__ import annotations

import argparse
import json
import sys
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "add_parsers",
    "backfill_change",
    "parameter_overrides",
    "patch_spec",
    "restart_change",
    "utc_time",
]


def add_parsers(sub: Any, wf_sub: Any) -> None:
    """Add --from and -p to `meson workflow restart` (handled here from now on) and `meson cron backfill`."""
    cron = sub.add_parser("cron", help="operate on a CronWorkflow")
    cron_sub = cron.add_subparsers(dest="operation", required=True)
    backfill = cron_sub.add_parser(
        "backfill",
        help="create the runs the schedule would have made in a past range",
        description="Create the runs a CronWorkflow's schedule would have made from --from to --to (both "
        "inclusive), through its queue like scheduled runs, in order, at most --parallel unfinished at once. "
        "Each run's Workflow is named like the scheduled run of that time, and gets the time in its "
        "scheduledTime parameter (if the template declares one): a time that already has a run, or a range "
        "already backfilled, creates nothing. "
        "Progress: kubectl get mcwf NAME -o jsonpath='{.status.backfills}'.",
    )
    backfill.add_argument("name")
    backfill.add_argument("-n", "--namespace", default="default")
    backfill.add_argument(
        "--from", dest="start", required=True, metavar="TIME", help="first time: RFC 3339 or YYYY-MM-DD (UTC)"
    )
    backfill.add_argument(
        "--to", dest="end", required=True, metavar="TIME", help="last time: RFC 3339 or YYYY-MM-DD (UTC)"
    )
    backfill.add_argument(
        "--parallel", type=int, default=1, metavar="N", help="most runs at once (default 1)"
    )
    backfill.set_defaults(handler=backfill_command)
    restart = wf_sub.choices["restart"]
    restart.description = (
        "Rerun a workflow on the same object: its failed and omitted steps and, with --from, that step and "
        "every step downstream of it (upstream steps keep their results and outputs). Recorded in "
        "status.history."
    )
    restart.add_argument(
        "--from", dest="from_step", metavar="STEP", help="rerun this step and everything downstream of it"
    )
    restart.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter for the rerun (VALUE read as JSON when it is JSON, else as text); repeatable",
    )
    restart.set_defaults(handler=restart_command)


def parameter_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["n=3", "date=2025-06-01"]`` → ``{"n": 3, "date": "2025-06-01"}`` (SystemExit on a bad pair)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, text = pair.partition("=")
        if not eq or not name:
            raise SystemExit(f"error: -p {pair!r}: expected NAME=VALUE")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


def restart_change(wf: dict, from_step: str | None, overrides: dict[str, Any]) -> dict:
    """The spec patch of a restart: restarts + 1, restartFrom, and the parameter list with new values
    (a merge patch replaces a list whole, so the whole list is sent)."""
    spec = wf.get("spec") or {}
    name = (wf.get("metadata") or {}).get("name")
    steps = {s.get("name") for s in spec.get("steps") or []}
    if from_step is not None and from_step not in steps:
        raise SystemExit(
            f"error: workflow {name} has no step {from_step!r} (steps: {', '.join(sorted(steps))})"
        )
    change: dict[str, Any] = {
        "restarts": int(spec.get("restarts", 0)) + 1,
        "shutdown": None,
        "restartFrom": from_step,
    }
    if overrides:
        params = [dict(p) for p in spec.get("parameters") or []]
        known = {p.get("name") for p in params}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SystemExit(f"error: workflow {name} has no parameter {', '.join(map(repr, unknown))}")
        for p in params:
            if p["name"] in overrides:
                p["value"] = overrides[p["name"]]
        change["parameters"] = params
    return change


def patch_spec(
    plural: str,
    name: str,
    namespace: str,
    change: Callable[[dict], dict],
    clients: Any = None,
    what: str = "change",
) -> int:
    """Read the object, then patch its spec with ``change(object)`` and the resourceVersion read: a
    concurrent change is a 409, and the change is computed again from the fresh object (nothing is lost or
    applied twice). 0, or 1 with the reason on stderr. Shared by every `meson` command that edits a spec."""
    from meson.adapters import kube

    clients = clients or kube.Clients.from_config(kube.load_client_config())
    path = (kube.GROUP, kube.VERSION, namespace, plural, name)
    kind = plural.rstrip("s")
    for _ in range(10):
        try:
            obj = kube.call(clients.custom.get_namespaced_custom_object, *path)
            body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "spec": change(obj)}
            kube.call(clients.custom.patch_namespaced_custom_object, *path, body)
            return 0
        except kube.ApiException as e:
            if e.status == 409:
                continue
            if e.status == 404:
                print(f"error: {kind} {name} not found in namespace {namespace}", file=sys.stderr)
                return 1
            raise
    print(f"error: {kind} {name} kept changing; {what} not applied", file=sys.stderr)
    return 1


def restart_command(args: argparse.Namespace) -> int:
    overrides = parameter_overrides(args.parameters)

    def change(wf: dict) -> dict:
        return restart_change(wf, args.from_step, overrides)

    code = patch_spec("workflows", args.name, args.namespace, change, what="restart")
    if code == 0:
        where = f" from step {args.from_step}" if args.from_step else ""
        print(f"workflow.meson.dev/{args.name} restart{where}")
    return code


def utc_time(text: str) -> str:
    """``2025-06-01`` or any RFC 3339 time → ``2025-06-01T00:00:00Z`` (UTC, seconds; SystemExit when bad)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"error: {text!r} is not a time (use RFC 3339 or YYYY-MM-DD)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backfill_change(cron: dict, start: str, end: str, parallel: int) -> tuple[dict, int]:
    """(the spec patch, the number of scheduled times in the range); SystemExit with the reason when the
    range is refused (backwards, in the future, empty, too many)."""
    from meson.api.validation import backfill_problems

    if not 1 <= parallel <= 100:
        raise SystemExit(f"error: --parallel {parallel}: must be from 1 to 100")
    spec = cron.get("spec") or {}
    tz = zoneinfo.ZoneInfo(spec.get("timeZone") or "UTC")
    count, problems = backfill_problems(spec.get("schedule", ""), tz, start, end)
    if problems:
        raise SystemExit("error: " + "; ".join(p.removeprefix("spec.backfill: ") for p in problems))
    return {"backfill": {"from": start, "to": end, "parallel": parallel}}, count


def backfill_command(args: argparse.Namespace) -> int:
    start, end = utc_time(args.start), utc_time(args.end)
    counted: list[int] = []

    def change(cron: dict) -> dict:
        patch, count = backfill_change(cron, start, end, args.parallel)
        counted.append(count)
        return patch

    code = patch_spec("cronworkflows", args.name, args.namespace, change, what="backfill")
    if code == 0:
        print(
            f"cronworkflow.meson.dev/{args.name} backfill of {counted[-1]} scheduled times from {start} to "
            f"{end}, at most {args.parallel} at once"
        )
    return code
