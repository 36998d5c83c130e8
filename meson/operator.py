"""`meson operator`: run the controllers (kopf) and the scheduling loop in one process."""

from __future__ import annotations

import asyncio
import gc
import logging
import os

import kopf

from meson.adapters import metrics
from meson.controllers.scheduling import Tuning

# The view holds every watched object: tens of thousands of long-lived dicts and lists, none in a reference
# cycle. With Python's default thresholds (700, 10, 10) the collector scanned them over and over: 5.5 s of
# the operator's 30 s of CPU on the benchmark's trace, 3.7 s of it in 15 full collections. Young objects
# are collected after this many allocations instead (cycles are still found, later).
GC_THRESHOLDS = (50_000, 20, 10)


def run(
    *,
    kubeconfig: str | None,
    metrics_port: int,
    webhook: str,
    webhook_port: int,
    liveness_port: int | None,
    verbose: bool,
    tuning: Tuning | None = None,
    election: dict | None = None,
    webhook_options: dict | None = None,
    dashboard: tuple[str, int] | None = None,
) -> int:
    from meson.controllers import handlers  # noqa: F401 - registers the kopf handlers

    if webhook != "off":
        from meson.controllers import admission  # noqa: F401 - registers the validating webhook handlers

    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    memo = kopf.Memo(
        options={
            **(webhook_options or {}),
            "kubeconfig": kubeconfig,
            "webhook": webhook,
            "webhook_port": webhook_port,
        },
        tuning=tuning or Tuning(),
        election=election,
    )
    kopf.configure(verbose=verbose, log_prefix=False)
    if not verbose:
        # kopf logs every handled watch event at INFO; with every pod of the cluster watched that is noise.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if metrics_port:
        metrics.serve(metrics_port)
    if dashboard:
        _serve_dashboard(*dashboard)
    gc.freeze()  # what start-up loaded (modules, kopf, the client) is never garbage: not scanned again
    gc.set_threshold(*GC_THRESHOLDS)
    # No stop_flag: kopf stops on SIGTERM/SIGINT itself. (A threading.Event stop flag is awaited in an
    # executor thread that asyncio.run then joins forever: the operator never exited on SIGTERM.)
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,  # kopf's peering is not a lock; --leader-elect uses a Lease (controllers.leader)
            liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
            memo=memo,
        )
    )
    return 0


def _serve_dashboard(address: str, port: int) -> None:
    """The web dashboard (meson.web) on the operator's event loop, showing its in-memory view: read on
    the loop's thread, the only one that changes it."""
    from meson import web

    @kopf.on.startup()
    async def dashboard(memo: kopf.Memo, **_: object) -> None:
        def eta(key: str) -> float | None:
            etas = getattr(memo.get("loop"), "etas", None)  # the loop's predictions (a standby has none)
            return etas.at(key) if etas is not None else None

        memo["dashboard"] = await web.start(lambda: web.snapshot_of(memo.get("store")), port, address, eta)
        logging.getLogger("meson.operator").info("dashboard on http://%s:%d/", address, port)

    @kopf.on.cleanup()
    async def dashboard_stop(memo: kopf.Memo, **_: object) -> None:
        if memo.get("dashboard") is not None:
            await memo["dashboard"].cleanup()
