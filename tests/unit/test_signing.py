import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.providers import daily, openvidu
from streamproc.providers.errors import MissingSignature, SignatureMismatch, StaleTimestamp
from streamproc.providers.signing import HmacScheme, timestamp_seconds
from streamproc.settings import Secret

NOW = 1_800_000_000.0
KEY = Secret("primary", b"0123456789abcdef0123456789abcdef")
OLD_KEY = Secret("previous", b"fedcba9876543210")
SCHEMES = [daily.SCHEME, openvidu.SCHEME]


def _headers(scheme: HmacScheme, key: bytes, body: bytes, timestamp: str) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in scheme.signed_headers(key, body, timestamp).items()}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("timestamp", [str(int(NOW)), str(int(NOW * 1000))])
def test_signature_verifies_with_seconds_or_milliseconds(scheme, timestamp):
    body = b'{"a": 1}'
    headers = _headers(scheme, KEY.key, body, timestamp)
    assert scheme.verify(headers, body, [KEY], NOW, 300) == "primary"


def test_daily_signature_is_base64_and_openvidu_hex_of_timestamp_dot_body():
    import hashlib
    import hmac

    body, ts = b'{"x":true}', "1700000000"
    digest = hmac.new(KEY.key, b"1700000000." + body, hashlib.sha256).digest()
    assert daily.SCHEME.sign(KEY.key, ts, body) == base64.b64encode(digest).decode()
    assert openvidu.SCHEME.sign(KEY.key, ts, body) == digest.hex()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rotated_secrets_all_verify_and_name_the_key(scheme):
    body = b"{}"
    headers = _headers(scheme, OLD_KEY.key, body, str(int(NOW)))
    assert scheme.verify(headers, body, [KEY, OLD_KEY], NOW, 300) == "previous"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_stale_and_future_timestamps_are_refused_with_their_age(scheme):
    body = b"{}"
    for sent in (NOW - 3600, NOW + 3600):
        headers = _headers(scheme, KEY.key, body, str(int(sent)))
        with pytest.raises(StaleTimestamp, match=r"3600 s .* tolerance is 300 s"):
            scheme.verify(headers, body, [KEY], NOW, 300)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_missing_headers_are_named(scheme):
    body = b"{}"
    headers = _headers(scheme, KEY.key, body, str(int(NOW)))
    for name in (scheme.signature_header, scheme.timestamp_header):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(MissingSignature, match=name.decode()):
            scheme.verify(partial, body, [KEY], NOW, 300)


def test_non_numeric_timestamp_is_refused():
    headers = _headers(daily.SCHEME, KEY.key, b"{}", "yesterday")
    with pytest.raises(StaleTimestamp, match="not a Unix timestamp"):
        daily.SCHEME.verify(headers, b"{}", [KEY], NOW, 300)


def test_timestamp_units():
    assert timestamp_seconds("1700000000") == 1_700_000_000
    assert timestamp_seconds("1700000000000") == 1_700_000_000
    with pytest.raises(ValueError):
        timestamp_seconds("nan")


@given(body=st.binary(max_size=2048), key=st.binary(min_size=1, max_size=64))
def test_any_body_and_key_round_trip(body, key):
    for scheme in SCHEMES:
        headers = _headers(scheme, key, body, str(int(NOW)))
        assert scheme.verify(headers, body, [Secret("k", key)], NOW, 300) == "k"


@given(body=st.binary(min_size=1, max_size=512), data=st.data())
def test_any_change_to_the_body_breaks_the_signature(body, data):
    index = data.draw(st.integers(0, len(body) - 1))
    flipped = data.draw(st.integers(1, 255))
    tampered = body[:index] + bytes([body[index] ^ flipped]) + body[index + 1 :]
    for scheme in SCHEMES:
        headers = _headers(scheme, KEY.key, body, str(int(NOW)))
        with pytest.raises(SignatureMismatch):
            scheme.verify(headers, tampered, [KEY], NOW, 300)
