"""The Standard Webhooks verifier, against the specification's published test vector and the
reference library (``standardwebhooks``, the specification's own Python package)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from streamproc.providers.errors import MissingSignature, SignatureMismatch, StaleTimestamp
from streamproc.providers.standard_webhooks import StandardWebhooksScheme
from streamproc.settings import Secret, decode_standard_webhooks_secret

# From standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
# (test_sign_function and the module's defaults).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# The same file's "invalid signature": the vector with its last byte changed.
VECTOR_FORGED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="

SCHEME = StandardWebhooksScheme()
SECRET = Secret("k0", decode_standard_webhooks_secret(VECTOR_SECRET))


def headers(signature: str, webhook_id: str = VECTOR_ID, ts: int = VECTOR_TIMESTAMP) -> dict:
    return {
        b"webhook-id": webhook_id.encode(),
        b"webhook-timestamp": str(ts).encode(),
        b"webhook-signature": signature.encode(),
    }


def verify(given: dict, secrets=(SECRET,), now: float = VECTOR_TIMESTAMP) -> str:
    return SCHEME.verify(given, VECTOR_PAYLOAD, secrets, now, 300.0)


def test_the_published_vector_signs_and_verifies():
    key = decode_standard_webhooks_secret(VECTOR_SECRET)
    signature = SCHEME.sign(key, VECTOR_ID, str(VECTOR_TIMESTAMP), VECTOR_PAYLOAD)
    assert signature == VECTOR_SIGNATURE
    assert verify(headers(VECTOR_SIGNATURE)) == "k0"


def test_the_published_forgery_is_refused():
    with pytest.raises(SignatureMismatch):
        verify(headers(VECTOR_FORGED))


def test_any_v1_signature_of_several_will_do_and_other_versions_are_ignored():
    v2 = VECTOR_SIGNATURE.replace("v1,", "v2,")
    several = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {v2} {VECTOR_SIGNATURE}"
    assert verify(headers(several)) == "k0"
    with pytest.raises(SignatureMismatch):
        verify(headers(v2))


def test_each_of_our_secrets_is_tried_for_rotation():
    old = Secret("old", b"another key")
    assert verify(headers(VECTOR_SIGNATURE), secrets=(old, SECRET)) == "k0"
    with pytest.raises(SignatureMismatch):
        verify(headers(VECTOR_SIGNATURE), secrets=(old,))


@pytest.mark.parametrize("missing", [b"webhook-id", b"webhook-timestamp", b"webhook-signature"])
def test_a_missing_header_is_named(missing):
    given = headers(VECTOR_SIGNATURE)
    del given[missing]
    with pytest.raises(MissingSignature, match=missing.decode()):
        verify(given)


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_timestamp_outside_the_tolerance_is_stale(skew):
    with pytest.raises(StaleTimestamp):
        verify(headers(VECTOR_SIGNATURE), now=VECTOR_TIMESTAMP + skew)


@pytest.mark.parametrize("timestamp", [b"hello", b"-5", b"1.5", b"\xb2", b"1e9", b""])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp):
    given = {**headers(VECTOR_SIGNATURE), b"webhook-timestamp": timestamp}
    with pytest.raises((StaleTimestamp, MissingSignature)):
        verify(given)


@pytest.mark.parametrize(
    "signature", ["v1", "v1,", "v1,!!!notbase64", "g0hM9SsE", ",,,", "v1,g0hM 9SsE", "\xff"]
)
def test_garbage_signatures_are_mismatches_not_crashes(signature):
    with pytest.raises(SignatureMismatch):
        verify(headers(signature))


@pytest.mark.parametrize("text", ["whsec_", "whsec_!!!", "not base64 at all"])
def test_a_bad_secret_is_a_value_error(text):
    with pytest.raises(ValueError):
        decode_standard_webhooks_secret(text)


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=64),
    webhook_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    body=st.text(max_size=200),
    ts=st.integers(min_value=1, max_value=4_000_000_000),
)
def test_whatever_the_reference_library_signs_we_verify(key, webhook_id, body, ts):
    secret = "whsec_" + base64.b64encode(key).decode()
    moment = datetime.fromtimestamp(ts, tz=UTC)
    signature = Webhook(secret).sign(msg_id=webhook_id, timestamp=moment, data=body)
    given = headers(signature, webhook_id, ts)
    accepted = SCHEME.verify(
        given, body.encode(), (Secret("k", decode_standard_webhooks_secret(secret)),), ts, 1
    )
    assert accepted == "k"
    assert (
        SCHEME.sign(decode_standard_webhooks_secret(secret), webhook_id, str(ts), body.encode())
        == signature
    )
