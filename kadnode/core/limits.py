"""Request rate limits: token buckets per source IP, per subnet, and in all. Pure.

Every request a node answers costs it CPU and bandwidth; an open network
must bound what one host, one subnet and everyone together can make it do.
A request is answered only if the buckets of its IP, of its /24 (/48) and
the global one all hold a token (OpenDHT's network engine does the same per
IP and globally). Excess requests are dropped before they are decoded and
counted. Hosts in the exempt ranges (a LAN, loopback test networks) skip
the per-IP and per-subnet buckets, not the global one.

Bounded: O(1) per request; at most ``MAX_TRACKED`` buckets per level, the
idle (full) ones dropped first when that many are held.
"""

from __future__ import annotations

from dataclasses import dataclass

from kadnode.config import Config
from kadnode.core.addresses import Exempt, subnet_of

MAX_TRACKED = 65536


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float

    def take(self, rate: float, burst: float, now: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Buckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, Bucket] = {}

    def take(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._sweep(now)
            bucket = self._buckets[key] = Bucket(self.burst, now)
        return bucket.take(self.rate, self.burst, now)

    def _sweep(self, now: float) -> None:
        """Drop the buckets that have refilled (idle keys); if none has, all:
        a flood of new keys then meets fresh buckets, and the global one."""
        full = [
            k for k, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimits:
    """Whether to answer a request from ``host`` now (see the module docstring)."""

    def __init__(self, config: Config, exempt: Exempt):
        self.per_ip = Buckets(config.requests_per_ip, config.requests_per_ip)
        self.per_subnet = Buckets(config.requests_per_subnet, config.requests_per_subnet)
        self.total = Bucket(config.requests_total, 0.0)
        self.total_rate = config.requests_total
        self.exempt = exempt

    def allow(self, host: str, now: float) -> bool:
        if host not in self.exempt and not (
            self.per_ip.take(host, now) and self.per_subnet.take(subnet_of(host), now)
        ):
            return False
        return self.total.take(self.total_rate, self.total_rate, now)
