"""Leader election on a Lease (coordination.k8s.io/v1), the way client-go and controller-runtime do it.

Several operator replicas may run; exactly one, the holder of the Lease, runs the scheduling loop (the
single writer). The others are warm standbys: their watches keep the in-memory view current, so a new
leader starts its first cycle at once instead of re-listing the cluster.

* Acquire: create the Lease, or take it over when its holder has not renewed it for
  ``leaseDurationSeconds``, measured on *our* clock from the moment we saw the record change (never by
  comparing timestamps written by another machine's clock, which may be skewed).
* Renew every ``renew_every`` seconds. Every write carries the resourceVersion read, so two candidates
  racing for the Lease cannot both win: the loser gets a 409 and stays a standby.
* A leader that cannot renew within ``renew_deadline`` stops leading at once (the process exits, as
  controller-runtime's manager does): after that another replica may already hold the Lease.
* On a clean shutdown the leader releases the Lease (holder cleared), so a standby takes over within
  one retry period rather than a whole lease duration.

kopf's own "peering" only pauses handlers across operators; it is not a lock, which is why this exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from meson.adapters import kube, metrics

log = logging.getLogger("meson.leader")


def _micro_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    clients: kube.Clients
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    leading: bool = False
    given_up: bool = False  # lost the lease once: never writes it again (a late attempt may still finish)
    _seen: tuple[str, str] | None = field(default=None, repr=False)  # (holder, renewTime) last observed
    _seen_at: float = field(default=0.0, repr=False)  # our clock when that record was first observed

    # --- one attempt (blocking; run it in a worker thread) ---------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One attempt to become or stay the leader; True if we hold the Lease afterwards."""
        coordination = self.clients.coordination
        try:
            raw = kube.call(
                coordination.read_namespaced_lease, self.name, self.namespace, _preload_content=False
            )
            lease = json.loads(raw.data)
        except kube.ApiException as e:
            if e.status != 404:
                raise
            return self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        now = self.clock()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now < self._seen_at + duration:
            self.leading = False
            return False  # held by someone else, and not expired as far as we have seen
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else _micro_time(self.wall())
        lease["spec"] = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": acquired,
            "renewTime": _micro_time(self.wall()),
            "leaseTransitions": transitions,
        }
        return self._write(kube.call, coordination.replace_namespaced_lease, self.name, self.namespace, lease)

    def _create(self) -> bool:
        now = _micro_time(self.wall())
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        return self._write(kube.call, self.clients.coordination.create_namespaced_lease, self.namespace, body)

    def _write(self, call: Callable, *args: object) -> bool:
        if self.given_up:
            return False
        try:
            call(*args, _preload_content=False)
        except kube.ApiException as e:
            if e.status == 409:  # another candidate wrote first: it leads
                self.leading = False
                return False
            raise
        if self.given_up:  # the deadline passed while this write was in flight
            return False
        if not self.leading:
            log.info("became the leader (%s/%s as %s)", self.namespace, self.name, self.identity)
        self.leading = True
        metrics.LEADER.set(1)
        return True

    def release(self) -> None:
        """Give the Lease up (clean shutdown), so a standby need not wait for it to expire."""
        if not self.leading:
            return
        self.leading = False
        metrics.LEADER.set(0)
        try:
            raw = kube.call(
                self.clients.coordination.read_namespaced_lease,
                self.name,
                self.namespace,
                _preload_content=False,
            )
            lease = json.loads(raw.data)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            self.clients.coordination.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=3, _preload_content=False
            )
            log.info("released the lease %s/%s", self.namespace, self.name)
        except Exception as exc:  # best effort: it expires anyway
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, exc)

    # --- running ----------------------------------------------------------------------------------
    async def lead(self, start: Callable[[], Awaitable[None]], lost: Callable[[], None]) -> None:
        """Wait to become the leader, then ``start`` leading and keep renewing; ``lost`` if we cannot."""
        run = asyncio.get_running_loop().run_in_executor
        while not await run(None, self._attempt):
            await asyncio.sleep(self.retry_period)
        await start()
        renewed = self.clock()
        while True:
            # Fencing: stop at the renew deadline even when the API server does not answer at all (a
            # partition holds a request forever), so each attempt may only use the time left before it.
            deadline = renewed + self.renew_deadline
            await asyncio.sleep(max(0.0, min(self.retry_period, deadline - self.clock())))
            ok = False
            if deadline - self.clock() > 0:
                with contextlib.suppress(TimeoutError):
                    ok = await asyncio.wait_for(run(None, self._attempt), timeout=deadline - self.clock())
            if ok:
                renewed = self.clock()
            elif not self.leading or self.clock() >= deadline:
                log.error("lost the lease %s/%s; stopping", self.namespace, self.name)
                metrics.LEADER.set(0)
                self.leading, self.given_up = False, True
                lost()
                return

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as exc:  # an unreachable server: not leading this time, try again
            log.warning("leader election attempt failed: %s", exc)
            return False
