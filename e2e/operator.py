"""Run `meson operator` as a real subprocess against the e2e control plane, and kill or restart it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """One operator process at a time; `kill()` is SIGKILL (no cleanup), like a crashed pod."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        webhook: str = "off",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = ("-m", "meson.cli"),
    ) -> None:
        """``launcher``: the Python module (and its leading arguments) that runs `meson` (a test-only
        wrapper such as e2e.crashing_operator may inject faults)."""
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, **(env or {})}
        self.webhook = webhook
        self.extra_args = extra_args
        self.launcher = launcher
        self.metrics_port = free_port()
        self.log_path = Path(tempfile.mkdtemp(prefix="meson-operator-")) / "operator.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "operator already running"
        args = [
            sys.executable, *self.launcher, "operator",
            "--kubeconfig", str(self.kubeconfig),
            "--metrics-port", str(self.metrics_port),
            "--webhook", self.webhook,
            "--webhook-port", str(free_port()),
            *self.extra_args,
        ]  # fmt: skip
        log = self.log_path.open("a")
        log.write(f"\n===== start {self.starts} =====\n")
        log.flush()
        self.proc = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        if not wait:
            return
        deadline = time.monotonic() + 60
        while not self.metrics_ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            assert time.monotonic() < deadline, (
                f"operator metrics not served after 60s:\n{self.log()[-4000:]}"
            )
            time.sleep(0.2)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metrics_ready(self) -> bool:
        try:
            self.metrics()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
