"""Build the control-plane binaries from their published Go modules, cached outside the repo.

Each component group is built in a tiny wrapper module (written into the cache, never into this repo)
that requires the upstream module at a pinned version. Kubernetes itself can only be consumed as a module
when every staging module its own go.mod replaces with a local path is pinned to the matching
v0.X.Y release (kubernetes/kubernetes#79384), so that replace block is derived from the upstream go.mod.

Cache layout: ``$MESON_E2E_CACHE`` (default ``~/.cache/meson-e2e``) / ``<group>-<version>/bin/<binary>``
with a ``.complete`` marker, so an interrupted build is redone and a warm start touches no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from e2e.cluster import versions


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "meson-e2e"
    return Path(os.environ.get("MESON_E2E_CACHE", default))


def log(msg: str) -> None:
    print(f"[e2e.cluster] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Group:
    """A set of binaries built from one upstream module at one version."""

    name: str
    version: str
    module: str
    packages: dict[str, str]  # binary name -> Go package path
    ldflags: list[str] = field(default_factory=list)
    extra_gomod: Callable[[], str] = lambda: ""

    @property
    def dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    def binary(self, name: str) -> Path:
        return self.dir / "bin" / name

    @property
    def complete(self) -> bool:
        return (self.dir / ".complete").exists() and all(self.binary(b).exists() for b in self.packages)


def _go(args: list[str], cwd: Path, *, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["go", *args], cwd=cwd, env=env or _go_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed in {cwd}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = "-buildvcs=false -mod=mod"
    env["GOWORK"] = "off"
    return env


def _kubernetes_replaces() -> str:
    """Pin every staging module that k8s.io/kubernetes replaces locally to its published release."""
    out = _go(["mod", "download", "-json", f"k8s.io/kubernetes@{versions.KUBERNETES}"], cwd=cache_root())
    gomod = Path(json.loads(out)["GoMod"]).read_text()
    block = re.search(r"^replace \((.*?)^\)", gomod, re.S | re.M)
    if not block:
        raise RuntimeError("k8s.io/kubernetes go.mod has no replace block; the build recipe needs updating")
    staged = re.findall(r"^\s*(\S+)\s+=>\s+\./staging/", block.group(1), re.M)
    lines = "".join(f"\t{m} => {m} {versions.KUBERNETES_STAGING}\n" for m in staged)
    return f"replace (\n{lines})\n"


def _k8s_version_ldflags() -> list[str]:
    major, minor, _ = versions.KUBERNETES.removeprefix("v").split(".")
    stamp = {
        "gitVersion": versions.KUBERNETES,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0000000000000000000000000000000000000000",
        "buildDate": "2026-01-01T00:00:00Z",
    }
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in stamp.items()]
    return flags


GROUPS: dict[str, Group] = {
    "kubernetes": Group(
        name="kubernetes",
        version=versions.KUBERNETES,
        module="k8s.io/kubernetes",
        packages={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_k8s_version_ldflags(),
        extra_gomod=_kubernetes_replaces,
    ),
    "etcd": Group(
        name="etcd",
        version=versions.ETCD,
        module="go.etcd.io/etcd/server/v3",
        # The etcd server module has no main package of its own; the wrapper's main calls etcdmain.
        packages={"etcd": "."},
    ),
    "kwok": Group(
        name="kwok",
        version=versions.KWOK,
        module="sigs.k8s.io/kwok",
        packages={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    ),
    "helm": Group(
        name="helm",
        version=versions.HELM,
        module="helm.sh/helm/v3",
        packages={"helm": "helm.sh/helm/v3/cmd/helm"},
        ldflags=[f"-X helm.sh/helm/v3/internal/version.version={versions.HELM}"],
    ),
}


def _write_wrapper(group: Group, src: Path) -> None:
    src.mkdir(parents=True, exist_ok=True)
    gomod = (
        f"module meson.local/e2e-build/{group.name}\n\ngo 1.26.0\n\n"
        f"require {group.module} {group.version}\n\n{group.extra_gomod()}"
    )
    (src / "go.mod").write_text(gomod)
    if group.name == "etcd":
        (src / "main.go").write_text(
            'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
            "func main() { etcdmain.Main(os.Args) }\n"
        )
    else:
        imports = "".join(f'\t_ "{p}"\n' for p in group.packages.values())
        (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports})\n")


def _build_with_progress(group: Group, src: Path) -> None:
    out_dir = group.dir / "bin"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["go", "build", "-v", "-trimpath", "-ldflags", " ".join(["-s", "-w", *group.ldflags]), "-o"]
    if len(group.packages) == 1:
        (binary,) = group.packages
        args += [str(out_dir / binary), *group.packages.values()]
    else:
        args += [str(out_dir) + "/", *group.packages.values()]
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=src, env=_go_env(), stderr=subprocess.PIPE, text=True)
    compiled = 0
    tail: list[str] = []
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(30):
            log(f"  {group.name}: {compiled} packages compiled, {time.monotonic() - started:.0f}s")

    threading.Thread(target=heartbeat, daemon=True).start()
    assert proc.stderr is not None
    for line in proc.stderr:
        compiled += 1
        tail = [*tail[-40:], line]
    done.set()
    if proc.wait() != 0:
        raise RuntimeError(f"building {group.name} failed:\n{''.join(tail)}")
    log(f"  {group.name} {group.version} built in {time.monotonic() - started:.0f}s")


def ensure_group(group: Group) -> Group:
    if group.complete:
        return group
    if shutil.which("go") is None:
        raise RuntimeError("the Go toolchain is required to build the control plane (go not on PATH)")
    log(f"building {group.name} {group.version} from {group.module} (first run only; cached in {group.dir})")
    src = group.dir / "src"
    if src.exists():
        shutil.rmtree(src)
    cache_root().mkdir(parents=True, exist_ok=True)
    _write_wrapper(group, src)
    _go(["mod", "tidy"], cwd=src)
    _build_with_progress(group, src)
    (group.dir / ".complete").write_text(group.version + "\n")
    return group


def ensure_all() -> dict[str, Path]:
    """Build whatever is missing; return binary name -> path."""
    started = time.monotonic()
    cold = [g.name for g in GROUPS.values() if not g.complete]
    paths: dict[str, Path] = {}
    for group in GROUPS.values():
        ensure_group(group)
        paths.update({b: group.binary(b) for b in group.packages})
    if cold:
        log(f"built {', '.join(cold)} in {time.monotonic() - started:.0f}s")
    return paths
