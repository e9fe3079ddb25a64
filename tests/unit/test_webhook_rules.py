"""Webhook rules: the signature receivers verify, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

from engine.webhook_rules import (
    MAX_ATTEMPTS,
    RETRY_CAP,
    after_attempt,
    retry_delay,
    retry_span,
    signature,
    verify_signature,
)

SECRET = "whsec_test"
BODY = b'{"type":"JobFailed","seq":7}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, BODY, 1700000000) == f"t=1700000000,v1={expected}"


def test_a_signature_verifies_only_for_its_body_secret_and_time() -> None:
    header = signature(SECRET, BODY, 1700000000)
    assert verify_signature(SECRET, BODY, header, now=1700000100)
    assert not verify_signature(SECRET, BODY + b" ", header, now=1700000100)
    assert not verify_signature("whsec_other", BODY, header, now=1700000100)
    assert not verify_signature(SECRET, BODY, header, now=1700000000 + 301)  # replayed late
    assert not verify_signature(SECRET, BODY, "t=abc,v1=00", now=1700000000)
    assert not verify_signature(SECRET, BODY, "garbage", now=1700000000)
    assert not verify_signature(SECRET, BODY, "t=1700000000,v1=é", now=1700000000)


def test_retries_start_within_seconds_and_are_capped_at_an_hour() -> None:
    assert [retry_delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert retry_delay(13) == RETRY_CAP == 3600
    assert max(retry_delay(n) for n in range(1, 100)) == 3600


def test_a_failing_delivery_is_retried_for_at_least_a_day() -> None:
    assert retry_span(MAX_ATTEMPTS) >= 24 * 3600
    assert retry_span(MAX_ATTEMPTS - 1) < 24 * 3600
    assert after_attempt(attempt=1, ok=False).delay == 1
    assert after_attempt(attempt=MAX_ATTEMPTS - 1, ok=False).outcome == "retry"
    assert after_attempt(attempt=MAX_ATTEMPTS, ok=False).outcome == "gave_up"
    assert after_attempt(attempt=MAX_ATTEMPTS, ok=True).outcome == "delivered"
