"""`meson workflow restart --from STEP -p k=v` and `meson cron backfill`: the workflow commands of #14, kept
out of :mod:`meson.cli` (which only hooks them in with :func:`add_parsers`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_parsers", "parameter_overrides", "restart_change"]


def add_parsers(sub: Any, wf_sub: Any) -> None:
    """Add --from and -p to `meson workflow restart` (handled here from now on)."""
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


def _patch(plural: str, name: str, namespace: str, change: Callable[[dict], dict]) -> int:
    """Read, then patch with the resourceVersion read: a concurrent change is a 409 and the change is made
    again from the fresh object (nothing lost, nothing applied twice)."""
    from meson.adapters import kube

    clients = kube.Clients.from_config(kube.load_client_config())
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
    print(f"error: {kind} {name} kept changing; not applied", file=sys.stderr)
    return 1


def restart_command(args: argparse.Namespace) -> int:
    overrides = parameter_overrides(args.parameters)
    code = _patch(
        "workflows", args.name, args.namespace, lambda wf: restart_change(wf, args.from_step, overrides)
    )
    if code == 0:
        where = f" from step {args.from_step}" if args.from_step else ""
        print(f"workflow.meson.dev/{args.name} restart{where}")
    return code
