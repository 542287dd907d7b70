"""What reaches POST /slack/events is checked before it is read (adapters/slack/ingress):
the signature on the raw bytes first, then the shape; never an exception other than
Unauthorized (401) or BadRequest (400)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from adapters.slack import ingress
from tests.slack_corpus import BAD_TIMESTAMPS, FORM, JSON, MALFORMED

SECRET = "s3cret"


def signed_headers(body: bytes, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + digest}


@pytest.mark.parametrize("name,content_type,body", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_signed_body_that_is_no_slack_payload_is_a_bad_request(name, content_type, body):
    ingress.verify(SECRET, signed_headers(body), body, time.time())  # it is signed...
    with pytest.raises(ingress.BadRequest):
        ingress.parse(content_type, body)  # ...and still refused


@pytest.mark.parametrize("name,content_type,body", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_an_unsigned_body_is_refused_before_it_is_read(name, content_type, body):
    with pytest.raises(ingress.Unauthorized):
        ingress.verify(SECRET, {}, body, time.time())
    with pytest.raises(ingress.Unauthorized):
        ingress.verify(SECRET, signed_headers(body, secret="other"), body, time.time())


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
def test_a_timestamp_that_is_no_number_is_unauthorized(timestamp):
    body = b'{"type": "event_callback"}'
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"}
    with pytest.raises(ingress.Unauthorized):
        ingress.verify(SECRET, headers, body, time.time())


def test_stale_or_tampered_requests_are_unauthorized():
    body = b'{"type": "event_callback"}'
    now = time.time()
    with pytest.raises(ingress.Unauthorized):
        ingress.verify(SECRET, signed_headers(body, at=now - 301), body, now)
    with pytest.raises(ingress.Unauthorized):
        ingress.verify(SECRET, signed_headers(body), body + b" ", now)
    ingress.verify(SECRET, signed_headers(body, at=now - 299), body, now)  # in time


def test_what_slack_sends_is_read_as_such():
    event = {
        "type": "event_callback",
        "event_id": "Ev1",
        "event": {"type": "message", "channel": "C1", "text": "hi", "ts": "1.2"},
    }
    got = ingress.parse(JSON, json.dumps(event).encode())
    assert (got.kind, got.body["event_id"]) == ("event", "Ev1")
    challenge = ingress.parse(JSON, b'{"type": "url_verification", "challenge": "abc"}')
    assert (challenge.kind, challenge.body["challenge"]) == ("url_verification", "abc")
    assert ingress.parse(JSON, b'{"type": "app_rate_limited"}').kind == "ignored"
    command = ingress.parse(FORM, b"command=%2Fticket&text=status+1&user_id=U1")
    assert (command.kind, command.body["text"]) == ("command", "status 1")
    press = ingress.parse(FORM, b"payload=%7B%22type%22%3A%22block_actions%22%7D")
    assert (press.kind, press.body["type"]) == ("interactive", "block_actions")
