"""`python -m e2e.cluster up/down` on a second, private control plane: idempotent up, clean down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from e2e.cluster.controlplane import _alive

REPO = Path(__file__).resolve().parents[1]


def cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESON_CLUSTER_DIR": str(data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "e2e.cluster", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"e2e.cluster {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_using(path: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_up_is_idempotent_and_down_leaves_no_process_or_port(tmp_path: Path, cluster) -> None:
    data_dir = tmp_path / "second-cluster"
    assert cli(data_dir, "kubeconfig", check=False).returncode != 0, "no cluster yet: kubeconfig must fail"
    try:
        first = cli(data_dir, "up", "--nodes", "2")
        kubeconfig = first.stdout.strip()
        state = json.loads((data_dir / "state.json").read_text())
        again = cli(data_dir, "up", "--nodes", "2")
        assert "reusing the running control plane" in again.stderr
        assert json.loads((data_dir / "state.json").read_text())["pids"] == state["pids"]
        assert cli(data_dir, "kubeconfig").stdout.strip() == kubeconfig
        assert all(_alive(pid) for pid in state["pids"].values())
        serving = {name: p for name, p in state["ports"].items() if name != "etcd_peer"}
        assert all(listening(p) for p in serving.values()), serving
    finally:
        cli(data_dir, "down")
    assert not any(_alive(pid) for pid in state["pids"].values()), "down must stop every process"
    # A freed port may be taken at once by another process on this busy machine (the main test cluster,
    # an operator): a port still open counts against down only while a process of this cluster lives.
    still_open = [p for p in state["ports"].values() if listening(p)]
    assert not (still_open and processes_using(data_dir)), f"down must close every port: {still_open}"
    assert processes_using(data_dir) == [], "no process of that control plane may survive"
    assert not data_dir.exists()
