"""A kopf operator with only Meson's validating webhooks, for the API e2e tests.

Run: ``KUBECONFIG=... MESON_WEBHOOK_PORT=9443 python -m kopf run --standalone --all-namespaces \
-m e2e.bad_manifests.operator``. The API server must reach 127.0.0.1 (the e2e control plane does).
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from meson.controllers import admission  # registers the @kopf.on.validate handlers


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    admission.configure_webhook(settings, port=int(os.environ.get("MESON_WEBHOOK_PORT", "9443")))
