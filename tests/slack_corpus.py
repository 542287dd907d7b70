"""Requests Slack never sends, for `POST /slack/events`: each must get 400 when signed
and 401 when not, never a 5xx, and change nothing (SPEC section 5)."""

from __future__ import annotations

import json

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def _form(**fields: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


# (name, content type, body)
MALFORMED: list[tuple[str, str, bytes]] = [
    ("empty json", JSON, b""),
    ("not json", JSON, b"{not json"),
    ("truncated json", JSON, b'{"type": "event_callback", "event": {"type": "mess'),
    ("json array", JSON, b"[1, 2, 3]"),
    ("json string", JSON, b'"event_callback"'),
    ("json null", JSON, b"null"),
    ("no type", JSON, b'{"event": {"type": "message"}}'),
    ("type is a number", JSON, b'{"type": 7}'),
    ("event is a string", JSON, b'{"type": "event_callback", "event_id": "Ev1", "event": "x"}'),
    ("event without type", JSON, b'{"type": "event_callback", "event_id": "Ev1", "event": {}}'),
    ("event without id", JSON, b'{"type": "event_callback", "event": {"type": "message"}}'),
    (
        "event id a number",
        JSON,
        b'{"type": "event_callback", "event_id": 12, "event": {"type": "message"}}',
    ),
    (
        "text is a list",
        JSON,
        json.dumps(
            {
                "type": "event_callback",
                "event_id": "Ev2",
                "event": {"type": "message", "channel": "C0HEALTH", "text": ["x"]},
            }
        ).encode(),
    ),
    (
        "thread_ts is a number",
        JSON,
        json.dumps(
            {
                "type": "event_callback",
                "event_id": "Ev3",
                "event": {"type": "message", "channel": "C0HEALTH", "thread_ts": 1.5},
            }
        ).encode(),
    ),
    ("challenge missing", JSON, b'{"type": "url_verification"}'),
    ("invalid utf-8", JSON, b'{"type": "event_callback", "x": "\xff\xfe"}'),
    ("unknown content type", "text/plain", b"hello"),
    ("xml", "application/xml", b"<event/>"),
    ("empty form", FORM, b""),
    ("form without command or payload", FORM, _form(text="hi")),
    ("payload not json", FORM, _form(payload="{garbage")),
    ("payload a list", FORM, _form(payload="[]")),
    ("payload without type", FORM, _form(payload='{"actions": []}')),
    ("payload actions a string", FORM, _form(payload='{"type": "block_actions", "actions": "x"}')),
    ("payload user a string", FORM, _form(payload='{"type": "block_actions", "user": "U1"}')),
    ("command not a slash", FORM, _form(command="ticket", text="status 1")),
    ("broken percent encoding", FORM, b"payload=%ZZ%%&&=="),
]

# Header sets that are no valid signature, whatever the body.
BAD_TIMESTAMPS = ["abc", "", "1e9", "-5", "12345678901234567890", " 170000000", "１２３"]
