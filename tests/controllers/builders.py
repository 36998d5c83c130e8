"""Meson objects as a user writes them (the e2e builders, as plain dicts), and readers of their status."""

from __future__ import annotations

from typing import Any

API_VERSION = "meson.dev/v1alpha1"


def step(
    name: str,
    *,
    deps: list[str] | None = None,
    cpu: str = "100m",
    duration: str = "1s",
    exit_code: int | None = None,
    **extra: Any,
) -> dict:
    annotations = {"sim.meson.dev/duration": duration}
    if exit_code is not None:
        annotations["sim.meson.dev/exit-code"] = str(exit_code)
    container = {"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
    out: dict[str, Any] = {
        "name": name,
        "template": {"metadata": {"annotations": annotations}, "spec": {"containers": [container]}},
        **extra,
    }
    if deps:
        out["dependencies"] = deps
    return out


def chain(*names: str, **kwargs: Any) -> list[dict]:
    """Steps that run one after the other."""
    return [step(n, deps=[names[i - 1]] if i else None, **kwargs) for i, n in enumerate(names)]


def workflow(name: str, queue: str, steps: list[dict], **spec: Any) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"queue": queue, "steps": steps, **spec},
    }


def queue(name: str, cpu: str | int = 100, limit: str | int | None = None, **spec: Any) -> dict:
    quota = {"cpu": {"guaranteed": cpu, **({"limit": limit} if limit is not None else {})}}
    return {
        "apiVersion": API_VERSION,
        "kind": "Queue",
        "metadata": {"name": name},
        "spec": {"quota": quota, **spec},
    }


def cron(
    name: str, schedule: str, queue: str = "default", steps: list[dict] | None = None, **spec: Any
) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "CronWorkflow",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "workflowTemplate": {"spec": {"queue": queue, "steps": steps or [step("only")]}},
            **spec,
        },
    }


def steps_by_instance(status: dict) -> dict[str, dict]:
    out = {}
    for s in status.get("steps") or []:
        out[s["name"] if s.get("index") is None else f"{s['name']}-{s['index']}"] = s
    return out


def condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)
