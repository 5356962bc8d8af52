"""Hostile requests over real sockets: the edge never answers 5xx, refuses every stranger with
a 4xx in its one JSON error shape, and keeps serving valid senders in between.

``STREAMPROC_FUZZ_EXAMPLES`` sets the number of generated requests (1,000 by default; the long
mode is 10,000 or more).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.local.processes import stop_process

from helpers import example, leaked_secrets, read_topic, signed, start_edge

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("STREAMPROC_FUZZ_EXAMPLES", "1000"))
VALID_EVERY = 50
RAW_TOPIC = f"fuzz-{uuid.uuid4().hex[:6]}.raw"


# Three requests in four are POSTs to a real webhook route, so most reach the signature and
# body checks; the rest probe everything else.
def _mostly(usual, other):
    return st.integers(0, 3).flatmap(lambda n: other if n == 0 else usual)


METHODS = _mostly(
    st.just("POST"), st.sampled_from(["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW"])
)
PATHS = _mostly(
    st.sampled_from(["/webhooks/daily", "/webhooks/openvidu"]),
    st.one_of(
        st.sampled_from(["/webhooks/zoom", "/", "/healthz", "/metrics", "/webhooks/daily/x"]),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(
            lambda text: "/" + text
        ),
    ),
)
SIGNATURES = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()[:-3]),  # truncated
    st.binary(max_size=32).map(bytes.hex),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
    st.just("v1,not-base64!!"),
)
TIMESTAMPS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.just(str(int(time.time()) - 10_000)),
    st.just(str(int(time.time() * 1000))),
    st.text(max_size=12).filter(lambda t: "\r" not in t and "\n" not in t),
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=2048),
    JSON_VALUES.map(orjson.dumps),
    st.just(b"[" * 10_000 + b"]" * 10_000),  # deep nesting
    st.just(b'{"id": 1, "id": 2, "type": "recording.started"}'),  # duplicate keys
    st.just(b'{"payload": {"n": 1' + b"0" * 5000 + b"}}"),  # a huge number
    st.just(b"\xff\xfe\x00 not utf-8"),
    st.sampled_from([example("daily", "recording.started"), example("openvidu", "recordingEnded")]),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "*/*+json"]
)
FRAMINGS = st.sampled_from(["length", "chunked", "short length"])


@pytest.fixture(scope="module")
def fuzz_edge(broker, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("fuzz") / "edge.log"
    edge = start_edge(
        broker.bootstrap,
        RAW_TOPIC,
        log_path,
        STREAMPROC_BODY_TIMEOUT_S="2",
        STREAMPROC_LOG_LEVEL="DEBUG",  # secrets stay out of logs at every level
    )
    edge.log_path = log_path
    try:
        yield edge
    finally:
        stop_process(edge.process)


def _exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the first response (the edge closes after it: ``connection:
    close``) and parse its status, headers and body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _request(method: str, path: str, headers: dict[str, str], body: bytes, framing: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: edge", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        declared = len(body) if framing == "length" else max(len(body) // 2, 0)
        lines.append(f"Content-Length: {declared}")
        payload = body
    return "\r\n".join(lines).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + payload


def _valid_request() -> tuple[str, bytes]:
    event_id = f"fuzz-valid-{uuid.uuid4().hex}"
    document = orjson.loads(example("daily", "recording.started"))
    document["id"] = event_id
    body = orjson.dumps(document)
    headers = {**signed("daily", body), "content-type": "application/json"}
    return event_id, _request("POST", "/webhooks/daily", headers, body, "length")


def test_hostile_requests_get_4xx_json_and_valid_ones_keep_landing(fuzz_edge):
    valid_ids: list[str] = []
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        method=METHODS,
        path=PATHS,
        body=BODIES,
        content_type=CONTENT_TYPES,
        signature=st.none() | SIGNATURES,
        timestamp=st.none() | TIMESTAMPS,
        provider=st.sampled_from(["daily", "openvidu"]),
        framing=FRAMINGS,
        sign_for_real=st.booleans(),
    )
    def one_request(
        method, path, body, content_type, signature, timestamp, provider, framing, sign_for_real
    ):
        headers: dict[str, str] = {"content-type": content_type} if content_type else {}
        if sign_for_real:  # right secret, right time: the body itself has to be refused
            headers.update(signed(provider, body))
        else:
            names = ("x-webhook-signature", "x-webhook-timestamp")
            if provider == "openvidu":
                names = ("x-signature", "x-timestamp")
            if signature is not None:
                headers[names[0]] = signature
            if timestamp is not None:
                headers[names[1]] = timestamp
        status, answer_headers, answer = _exchange(
            fuzz_edge.url, _request(method, path, headers, body, framing)
        )
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (status, answer[:300])
        assert not leaked_secrets(answer)
        if 400 <= status < 500 and method != "HEAD":
            error = orjson.loads(answer)
            assert set(error) >= {"error", "message"}, error
            assert answer_headers["content-type"] == "application/json"
        if sum(seen.values()) % VALID_EVERY == 0:
            event_id, request = _valid_request()
            valid_status, _, valid_answer = _exchange(fuzz_edge.url, request)
            assert valid_status == 200, valid_answer
            valid_ids.append(event_id)

    one_request()
    print(
        f"\nedge fuzz: {sum(seen.values())} hostile requests, answers {dict(sorted(seen.items()))}"
    )
    assert len(valid_ids) >= EXAMPLES // VALID_EVERY - 1
    records = asyncio.run(read_topic(fuzz_edge.bootstrap, RAW_TOPIC, timeout_s=5))
    landed = {dict(record.headers)["event-id"].decode() for record in records}
    assert set(valid_ids) <= landed, sorted(set(valid_ids) - landed)[:5]
    _, _, metrics = _exchange(fuzz_edge.url, _request("GET", "/metrics", {}, b"", "length"))
    assert leaked_secrets(fuzz_edge.log_path.read_bytes(), metrics) == []


def test_a_replayed_valid_request_is_refused_after_the_tolerance(fuzz_edge):
    body = example("daily", "recording.started")
    old = str(int(time.time()) - 301)
    headers = {**signed("daily", body, ts=old), "content-type": "application/json"}
    status, _, answer = _exchange(
        fuzz_edge.url, _request("POST", "/webhooks/daily", headers, body, "length")
    )
    assert (status, orjson.loads(answer)["error"]) == (401, "stale_timestamp")


def test_a_content_length_that_promises_more_gets_408(fuzz_edge):
    body = example("daily", "recording.started")
    request = _request("POST", "/webhooks/daily", {"content-type": "application/json"}, body, "")
    request = request.replace(b"Content-Length: %d" % (len(body) // 2), b"Content-Length: 99999")
    status, _, answer = _exchange(fuzz_edge.url, request)
    assert (status, orjson.loads(answer)["error"]) == (408, "request_timeout")
