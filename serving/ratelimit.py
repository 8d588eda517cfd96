"""Per-key rate limiting: one token bucket per API key, in the memory of one worker process.

A bucket holds up to `burst` tokens and refills at `per_second` tokens per second; a request takes
one token or is refused with the seconds to wait until one is back (HTTP 429 with `Retry-After`).
Time is passed in (`now`, seconds on a monotonic clock), so the arithmetic is pure and testable.

Each worker keeps its own buckets: with W workers a key may reach W times its limit.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """Sustained `per_second` requests (> 0) with bursts of up to `burst` (>= 1) at once."""

    per_second: float = 50.0
    burst: int = 100

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ValueError(f"rate must be a positive number of requests per second, not {self.per_second}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst}")


class TokenBucket:
    """Tokens in [0, burst], refilled continuously; starts full."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds (> 0) until one is available."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.limit.burst), self.tokens + elapsed * self.limit.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.limit.per_second


class RateLimiter:
    """One bucket per key id; a key whose limit changed gets a fresh bucket."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, key_id: str, limit: RateLimit, now: float) -> float:
        """0.0 when the key may send this request now, else the seconds it must wait."""
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None or bucket.limit != limit:
                bucket = self._buckets[key_id] = TokenBucket(limit, now)
            return bucket.take(now)


def retry_after_header(wait_seconds: float) -> str:
    """`Retry-After` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_seconds)))
