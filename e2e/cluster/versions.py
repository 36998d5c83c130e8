"""Pinned versions of every component of the embedded control plane.

One place to bump: the build cache is keyed by these strings, so a change here triggers a rebuild of
exactly the components whose version changed.
"""

from __future__ import annotations

KUBERNETES = "v1.36.3"
# Staging modules (k8s.io/api, apimachinery, ...) are published as v0.<minor>.<patch>.
KUBERNETES_STAGING = "v0." + KUBERNETES.removeprefix("v1.")
# Kubernetes 1.36 pins the etcd v3.6 client; the server is the latest 3.6 patch.
ETCD = "v3.6.16"
KWOK = "v0.8.0"
HELM = "v3.22.0"
