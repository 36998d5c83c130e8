"""Flow control: token buckets on pod starts, plus the hold switches.

Admission rate is limited in *pods per second*, because that is what loads the API server and
kube-scheduler. Each queue may have a bucket, and there is one global bucket. A bucket refills at
``rate`` up to ``burst`` tokens; a workload needs ``min(pods, burst)`` tokens to start and then
pays its full pod count, possibly going into debt. That lets a gang larger than the burst start
(all-or-nothing, never split) when the bucket is full, while the long-run rate still holds.

Time comes only from snapshots, so the same snapshot sequence gives the same throttling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: int
    tokens: float
    last: float

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate, burst, float(burst), now)

    def configure(self, rate: float, burst: int) -> None:
        """Follow a config change without granting a free refill."""
        self.rate = rate
        self.burst = burst
        self.tokens = min(self.tokens, float(burst))

    def refill(self, now: float) -> None:
        if now > self.last:  # time never runs backwards for a bucket
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
            self.last = now

    def can_take(self, pods: int) -> bool:
        return self.tokens >= min(pods, self.burst)

    def take(self, pods: int) -> None:
        self.tokens -= pods

    def ready_at(self, pods: int) -> float:
        """When ``can_take(pods)`` will become true with no other spending."""
        missing = min(pods, self.burst) - self.tokens
        if missing <= 0:
            return self.last
        return self.last + missing / self.rate


def format_rate(rate: float) -> str:
    """``50/s`` for reasons; slow rates read better per minute (``6/min``)."""
    if rate < 1 and math.isclose(rate * 60, round(rate * 60)):
        return f"{round(rate * 60)}/min"
    return f"{rate:g}/s"
