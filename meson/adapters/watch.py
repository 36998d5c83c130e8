"""List-and-watch of one resource across namespaces, as client-go's reflector does it, for the two
resources with most events (pods and workflows: about ten events per workload on Kueue's trace).

kopf hands each watch event through its per-object machinery (a patch, a logger, memories, handler
selection) before our handler runs: profiled at about two thirds of a millisecond of CPU per event, a
third of the operator's event-loop time on Kueue's trace, where the handler itself (feeding the view) is
a few microseconds. This reads the watch stream itself and calls ``on_event(type, object)`` on the event
loop's thread, the one thread that touches the view, exactly as the kopf handlers do.

It starts from the resourceVersion of the operator's initial listing (:func:`meson.controllers.handlers.
prime`), so nothing is listed twice at start-up. Bookmarks keep the resourceVersion fresh; a watch that
ends is resumed from the last one; "410 Gone" (the version is too old) re-lists, feeds every object listed
and hands the listed names to ``on_relisted``, so the view forgets what vanished meanwhile (it keeps the
objects' last state itself: this keeps none, so memory does not grow with the cluster). Other
failures (a dropped connection, 429, 5xx, an RBAC refusal) are logged and retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from kubernetes import client

from meson.adapters import metrics

log = logging.getLogger("meson.watch")

OnEvent = Callable[[str, dict[str, Any]], None]
Key = tuple[str, str]
#: After a re-list, with the (namespace, name) of every object listed: forget the others.
OnRelisted = Callable[[set[Key]], None]

#: The API server ends each watch after this long (a little randomised, as client-go does).
WATCH_SECONDS = 300
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Gone(Exception):
    """The resourceVersion is too old to resume from (410): list again."""


class Watcher:
    """One resource (``path``: e.g. ``/api/v1/pods``), fed to ``on_event``."""

    def __init__(
        self,
        cfg: client.Configuration,
        path: str,
        on_event: OnEvent,
        on_relisted: OnRelisted,
        *,
        name: str,
        resource_version: str = "",
    ) -> None:
        self._cfg = cfg
        self._path = path
        self._on_event = on_event
        self._on_relisted = on_relisted
        self.name = name
        self._counted = metrics.WATCH_EVENTS.labels(resource=name)  # looked up once, not per event
        self.resource_version = resource_version  # of the initial listing (fed already): watched from there
        self.relists = 0

    async def run(self) -> None:
        """Watch until cancelled."""
        backoff = BACKOFF_START
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_ssl_context(self._cfg))) as http:
            while True:
                try:
                    if not self.resource_version:
                        await self._relist(http)
                    await self._watch(http)
                    backoff = BACKOFF_START  # the server ended the watch: resume at once
                except Gone:
                    self.resource_version = ""  # list again, at once
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a dropped connection, 429, 5xx, a refusal: retried
                    log.warning("%s watch failed (%s); retrying in %.1fs", self.name, exc, backoff)
                    await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, BACKOFF_MAX)

    async def _watch(self, http: aiohttp.ClientSession) -> None:
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            "timeoutSeconds": str(int(WATCH_SECONDS * random.uniform(1.0, 1.2))),
        }
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=WATCH_SECONDS * 1.5)
        async with http.get(self._url(), params=params, headers=self._headers(), timeout=timeout) as resp:
            if resp.status == 410:
                raise Gone()
            if resp.status >= 400:
                raise RuntimeError(f"{resp.status}: {(await resp.text())[:200]}")
            pending = bytearray()
            async for chunk in resp.content.iter_any():
                pending += chunk
                while (end := pending.find(b"\n")) >= 0:
                    line = bytes(pending[:end])
                    del pending[: end + 1]
                    if line.strip():
                        self._event(json.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(f"watch error: {obj.get('code')} {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind not in ("ADDED", "MODIFIED", "DELETED"):  # a BOOKMARK only moves the resourceVersion
            return
        self._counted.inc()
        self._on_event(kind, obj)

    async def _relist(self, http: aiohttp.ClientSession) -> None:
        async with http.get(
            self._url(), headers=self._headers(), timeout=aiohttp.ClientTimeout(total=300)
        ) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"list: {resp.status}: {(await resp.text())[:200]}")
            listing = json.loads(await resp.read())
        self.relists += 1
        items = listing.get("items") or []
        kind = (listing.get("kind") or "").removesuffix("List")
        api_version = listing.get("apiVersion")
        for obj in items:  # a list's items carry neither kind nor apiVersion
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
            self._on_event("ADDED", obj)
        self._on_relisted({_key(obj) for obj in items})  # the rest was deleted while we were not watching
        self.resource_version = (listing.get("metadata") or {}).get("resourceVersion") or ""
        log.info("%s re-listed: %d objects, resourceVersion %s", self.name, len(items), self.resource_version)

    def _url(self) -> str:
        return self._cfg.host.rstrip("/") + self._path

    def _headers(self) -> dict[str, str]:
        """The credentials the typed client sends (auth_settings refreshes a rotated token first)."""
        headers = {"Accept": "application/json"}
        for setting in self._cfg.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers


def _ssl_context(cfg: client.Configuration) -> ssl.SSLContext | bool:
    if not cfg.host.startswith("https"):
        return False
    if not cfg.verify_ssl:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.assert_hostname is False:
            ctx.check_hostname = False
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


async def stop(tasks: Iterable[asyncio.Task]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
