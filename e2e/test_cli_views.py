"""The `meson` views against the real control plane and operator: `meson workflow get` (the DAG with each
step's phase, attempts and node), `meson workflow logs` (kwok's nodes serve no logs: said per pod),
`meson streamjob get` (revisions and replicas), the same command as a kubectl plugin, and
`meson simulate` on the live cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import apply, meson_cli, queue, step, uid, wait_for, wait_workflow, workflow
from e2e.operator import OperatorProcess
from e2e.test_streamjobs import streamjob

VENV_BIN = Path(sys.executable).parent


def run_meson(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`meson ARGS` whatever its exit status (meson_cli asserts success)."""
    return subprocess.run(
        [sys.executable, "-m", "meson.cli", *args],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_workflow_get_shows_the_dag_with_phases_attempts_and_nodes_and_logs_say_why_none(
    cluster: Cluster,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    namespace: str,
    queues: list[str],
) -> None:
    q = f"views-{uid()}"
    queues.append(q)
    flaky = {"sim.meson.dev/exit-code": "3", "sim.meson.dev/fail-attempts": "1"}
    steps = [
        step("extract", annotations=flaky, retryPolicy={"limit": 2}),
        step("transform", deps=["extract"]),
        step("report", deps=["extract"]),
        step("load", deps=["transform", "report"]),
    ]
    apply(cluster, queue(q, cpu=8))
    apply(cluster, workflow("etl", q, steps), namespace=namespace)
    wait_workflow(custom, namespace, "etl", ("Succeeded",))

    data = json.loads(meson_cli(cluster, "workflow", "get", "etl", "-n", namespace, "-o", "json"))
    by_name = {s["name"]: s for s in data["steps"]}
    assert list(by_name) == ["extract", "transform", "report", "load"]
    assert all(s["phase"] == "Succeeded" for s in by_name.values()), by_name
    assert by_name["extract"]["attempts"] == 2, "it failed once, then succeeded"
    assert by_name["load"]["dependencies"] == ["transform", "report"]
    assert all(s["node"] for s in by_name.values()), "each step ran on a node"
    assert all(s["duration"] is not None and s["duration"] >= 0 for s in by_name.values())

    tree = meson_cli(cluster, "workflow", "get", "etl", "-n", namespace)
    lines = tree.splitlines()
    assert "Succeeded" in lines[0] and f"queue {q}" in lines[0]
    (load,) = [line for line in lines if "load" in line]
    assert "also after" in load and "Succeeded" in load
    assert "attempts 2" in next(line for line in lines if "extract" in line)

    logs = run_meson(cluster, "workflow", "logs", "etl", "extract", "-n", namespace)
    # Both attempts' pods are listed; kwok's nodes run no kubelet, so the API server has no logs to give.
    assert logs.stdout.count("==> ") >= 1 and "(step extract" in logs.stdout, logs.stdout + logs.stderr
    assert "no logs" in logs.stdout and "kwok" in logs.stdout
    assert logs.returncode == 1
    missing = run_meson(cluster, "workflow", "get", "nope", "-n", namespace)
    assert missing.returncode == 1 and f"workflow nope not found in namespace {namespace}" in missing.stderr


def test_streamjob_get_and_kubectl_meson(
    cluster: Cluster,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    namespace: str,
    queues: list[str],
) -> None:
    q = f"views-sj-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=8))
    apply(cluster, streamjob("clicks", q, replicas=2), namespace=namespace)

    def ready() -> dict | None:
        data = json.loads(meson_cli(cluster, "streamjob", "get", "clicks", "-n", namespace, "-o", "json"))
        return data if data["ready"] == 2 and len(data["pods"]) == 2 else None

    data = wait_for(ready, 90, "stream job clicks to have 2 ready replicas")
    (current,) = [r for r in data["revisions"] if r["current"]]
    assert current["replicas"] == 2 and all(p["revision"] == current["revision"] for p in data["pods"])
    assert sorted(p["slot"] for p in data["pods"]) == ["0", "1"]
    out = meson_cli(cluster, "streamjob", "get", "clicks", "-n", namespace)
    assert "Revisions" in out and current["revision"] in out and "ready 2/2" in out

    # kubectl finds the plugin as kubectl-meson on $PATH (the console script pyproject.toml installs).
    assert (VENV_BIN / "kubectl-meson").exists(), "make venv installs the kubectl-meson entry point"
    env = {**cluster.env(), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    plugin = subprocess.run(
        [str(cluster.kubectl_bin), "meson", "queues", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert plugin.returncode == 0, plugin.stderr
    assert q in {row["name"] for row in json.loads(plugin.stdout)}


def test_simulate_replays_the_live_cluster_before_and_after_a_quota_change(
    cluster: Cluster,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    namespace: str,
    queues: list[str],
    tmp_path: Path,
) -> None:
    """Three 1-CPU steps of 60 s in a 1-CPU queue: one runs, two wait. Replayed with the queue given 3
    CPUs they would all start at once."""
    q = f"sim-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=1, limit=1))
    steps = [step(f"s{i}", cpu="1", duration="60s", expectedDurationSeconds=60) for i in range(3)]
    apply(cluster, workflow("wide", q, steps), namespace=namespace)

    def two_waiting() -> bool:
        rows = json.loads(meson_cli(cluster, "pending", q, "-o", "json"))
        return len(rows) == 2

    wait_for(two_waiting, 60, "two steps waiting in the 1-CPU queue")
    change = tmp_path / "more.yaml"
    change.write_text(yaml.safe_dump(queue(q, cpu=3, limit=3)))
    started = time.monotonic()
    out = json.loads(meson_cli(cluster, "simulate", "-f", str(change), "-o", "json"))
    print(f"meson simulate on the live cluster: {time.monotonic() - started:.1f} s")
    before, after = out["before"][q], out["after"][q]
    assert before["workloads"] == after["workloads"] == 2
    # Before: the second waits for the running one (60 s), the third for both; after: no wait.
    assert 0 < before["tta_p50"] <= 60 < before["tta_p90"] <= 120, before
    assert after["tta_p90"] == 0 and after["preemptions"] == 0, after
    table = meson_cli(cluster, "simulate", "-f", str(change))
    assert "the live cluster: " in table and f"{q} (cpu)" in table and "→ 0s" in table

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(queue(q, cpu="lots")))
    refused = run_meson(cluster, "simulate", "-f", str(bad))
    assert refused.returncode == 2 and "line 8, field spec.quota.cpu.guaranteed" in refused.stderr, (
        refused.stderr
    )
