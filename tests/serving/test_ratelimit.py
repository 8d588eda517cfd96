"""Token buckets: a burst, then the sustained rate, with the wait until the next token."""

from __future__ import annotations

import pytest

from serving.ratelimit import RateLimit, RateLimiter, TokenBucket, retry_after_header


def test_a_full_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(RateLimit(per_second=2.0, burst=3), now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token back after 1/rate seconds
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled, but never above the burst
    assert bucket.take(100.0) > 0


def test_keys_have_buckets_of_their_own_and_a_changed_limit_starts_afresh() -> None:
    limiter = RateLimiter()
    one = RateLimit(per_second=1.0, burst=1)
    assert limiter.wait_seconds("a", one, 0.0) == 0.0
    assert limiter.wait_seconds("a", one, 0.0) == pytest.approx(1.0)
    assert limiter.wait_seconds("b", one, 0.0) == 0.0
    assert limiter.wait_seconds("a", RateLimit(per_second=1.0, burst=5), 0.0) == 0.0


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: str) -> None:
    assert retry_after_header(wait) == header


@pytest.mark.parametrize(("per_second", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_limits_must_be_positive(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimit(per_second=per_second, burst=burst)
