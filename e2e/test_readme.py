"""Every shell command of the README's "Using Meson" section runs as written, in order, against the embedded
control plane with the operator running: `kubectl` is the control plane's own, `meson` the venv's, the
working directory the repository root, and the namespace kubectl's default one (as for a new user)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.conftest import Cluster
from e2e.helpers import wait_for
from e2e.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
SECTION = "Using Meson"


def readme_commands(text: str, section: str = SECTION) -> list[str]:
    """The lines of the ```sh blocks of one `##` section (comments are left to the shell)."""
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"no section '{section}' in README.md"
    blocks = re.findall(r"^```sh\n(.*?)^```", match.group(1), re.S | re.M)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_section_has_commands_and_no_placeholders() -> None:
    commands = readme_commands((REPO / "README.md").read_text())
    assert len(commands) >= 10
    for line in commands:
        code = line.split(" #")[0]
        assert "|" not in code and "NAME" not in code and "..." not in code, (
            f"not runnable as written: {line}"
        )


@pytest.fixture
def readme_objects(cluster: Cluster):
    """What the README creates in the default namespace goes afterwards (the queues and CRDs stay: other
    tests share them)."""
    yield
    for kind, name in (("workflow", "daily-sales-etl"), ("streamjob", "clickstream-enricher")):
        cluster.kubectl(
            "delete", kind, name, "-n", "default", "--ignore-not-found", "--wait=false", check=False
        )


def test_every_using_meson_command_runs_as_written(
    cluster: Cluster, operator: OperatorProcess, readme_objects: None
) -> None:
    commands = readme_commands((REPO / "README.md").read_text())
    path = os.pathsep.join([str(cluster.kubectl_bin.parent), str(Path(sys.executable).parent)])
    env = {**cluster.env(), "PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in commands:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", line],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        print(f"$ {line}\n{proc.stdout}{proc.stderr}")
        assert proc.returncode == 0, f"README command failed ({proc.returncode}): {line}\n{proc.stderr}"

    # What they did: the workflow is the operator's (admitted through the analytics queue), the stream job
    # was scaled, and the views saw both queues and workflow.
    def admitted() -> dict | None:
        out = cluster.kubectl("get", "workflow", "daily-sales-etl", "-n", "default", "-o", "json").stdout
        status = json.loads(out).get("status") or {}
        return status if status.get("phase") in ("Running", "Succeeded", "Suspended") else None

    wait_for(admitted, 60, "the README's workflow to be picked up by the operator")
    job = json.loads(
        cluster.kubectl("get", "streamjob", "clickstream-enricher", "-n", "default", "-o", "json").stdout
    )
    assert job["spec"]["replicas"] == 5 and job["spec"].get("desiredState", "Running") == "Running"
    queues = subprocess.run(
        [sys.executable, "-m", "meson.cli", "queues", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    names = {q["name"] for q in json.loads(queues.stdout)}
    assert {"cluster", "research", "analytics", "default"} <= names
