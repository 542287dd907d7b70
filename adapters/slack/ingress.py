"""What arrives on `POST /slack/events`, checked before anything reads it (pure).

The signature is checked on the raw bytes first (Slack's "Verifying requests from
Slack": `v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret, the
timestamp within five minutes); only a signed request is parsed. Anything unsigned,
badly signed or stale is `Unauthorized` (401); anything signed that cannot be read as
one of Slack's payloads is `BadRequest` (400). Neither ever becomes a 5xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

MAX_AGE = 5 * 60  # seconds, as Slack's docs say
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


class Unauthorized(Exception):
    """Unsigned, badly signed or older than five minutes: 401, and nothing changes."""


class BadRequest(Exception):
    """Signed, but not a payload Slack sends: 400, and nothing changes."""


Kind = Literal["url_verification", "event", "ignored", "command", "interactive"]


@dataclass(frozen=True, slots=True)
class Request:
    kind: Kind
    body: dict[str, Any]  # the event envelope, the slash command's form, the interaction
    text: str  # the raw body, decoded


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Raises Unauthorized unless Slack signed this body within the last five minutes."""
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.isascii():
        raise Unauthorized("no valid signature headers")
    if abs(now - int(timestamp)) > MAX_AGE:
        raise Unauthorized("stale timestamp")
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("signature mismatch")


def parse(content_type: str, body: bytes) -> Request:
    """The signed body as one of Slack's payloads; raises BadRequest otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("not UTF-8") from None
    if content_type == JSON_TYPE:
        envelope = _json_object(text)
        kind = envelope.get("type")
        if kind == "url_verification":
            if not isinstance(envelope.get("challenge"), str):
                raise BadRequest("url_verification without a challenge")
            return Request("url_verification", envelope, text)
        if kind == "event_callback":
            _check_event(envelope)
            return Request("event", envelope, text)
        if isinstance(kind, str):  # app_rate_limited and other notices: acknowledged
            return Request("ignored", envelope, text)
        raise BadRequest("no type")
    if content_type == FORM_TYPE:
        try:
            form = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
        except ValueError:
            raise BadRequest("not a form") from None
        fields = {k: v[0] for k, v in form.items()}
        if "payload" in fields:
            interaction = _json_object(fields["payload"])
            if not isinstance(interaction.get("type"), str):
                raise BadRequest("interaction without a type")
            _check_shape(interaction, user=dict, channel=dict, actions=list)
            return Request("interactive", interaction, text)
        if isinstance(fields.get("command"), str) and fields["command"].startswith("/"):
            return Request("command", fields, text)
        raise BadRequest("a form that is neither a command nor an interaction")
    raise BadRequest(f"unexpected content type {content_type!r}")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise BadRequest("not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("not a JSON object")
    return value


def _check_event(envelope: dict[str, Any]) -> None:
    """An event envelope carries an id (replays are told apart by it) and an event with
    a type; the fields the bot reads, where present, have Slack's types."""
    if not isinstance(envelope.get("event_id"), str) or not envelope["event_id"]:
        raise BadRequest("event without an event_id")
    event = envelope.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise BadRequest("event without a type")
    _check_shape(
        event,
        channel=str,
        user=str,
        text=str,
        ts=str,
        thread_ts=str,
        subtype=str,
        bot_id=str,
        files=list,
        blocks=list,
        message=dict,
    )


def _check_shape(value: dict[str, Any], **types: type) -> None:
    for key, wanted in types.items():
        if key in value and value[key] is not None and not isinstance(value[key], wanted):
            raise BadRequest(f"{key} is not a {wanted.__name__}")
