"""Pinned versions of every component of the embedded control plane.

One place to bump: the build cache is keyed by these strings, so a change here triggers a rebuild of
exactly the components whose version changed.

The Kubernetes minor is a setting: ``MESON_K8S_VERSION=1.33`` (a supported minor, or an exact
``v1.33.13``) builds and runs that release instead of the newest; each version has its own build cache
directory (``kubernetes-<version>``), so switching back and forth rebuilds nothing. The chart claims
Kubernetes >= 1.33 (helm/meson/Chart.yaml), so the oldest supported minor is exercised too
(`make e2e-oldest`).
"""

from __future__ import annotations

import os
import re

# Supported minors -> the patch release built for each (the latest patch the Go module proxy serves).
SUPPORTED = {
    "1.36": "v1.36.3",
    "1.33": "v1.33.13",
}
NEWEST = "1.36"
OLDEST = "1.33"


def kubernetes_version(setting: str | None) -> str:
    """``None``/empty -> the newest; ``1.33`` -> its pinned patch; ``v1.33.13``/``1.33.13`` -> as given."""
    if not setting:
        return SUPPORTED[NEWEST]
    value = setting.strip().removeprefix("v")
    if value in SUPPORTED:
        return SUPPORTED[value]
    if re.fullmatch(r"1\.\d+\.\d+", value):
        return "v" + value
    raise ValueError(
        f"MESON_K8S_VERSION={setting!r}: expected one of {', '.join(sorted(SUPPORTED))} or a full v1.X.Y"
    )


KUBERNETES = kubernetes_version(os.environ.get("MESON_K8S_VERSION"))
# Staging modules (k8s.io/api, apimachinery, ...) are published as v0.<minor>.<patch>.
KUBERNETES_STAGING = "v0." + KUBERNETES.removeprefix("v1.")
# The server is the latest etcd 3.6 patch for every supported minor: 1.36 pins the etcd v3.6 client, and
# the 3.5 client of 1.33 speaks the same v3 API to a 3.6 server.
ETCD = "v3.6.16"
KWOK = "v0.8.0"
HELM = "v3.22.0"
