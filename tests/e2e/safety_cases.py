"""What the Slack and Matrix safety suites share: the `safety` settings, one reply for
each hold of SPEC section 5 with the reason the agent must be shown, a reply that no
hold may stop, and how to read what reached X. Each suite drives them through its chat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.harness import Stand

SAFETY = {
    "official_numbers": ["1075", "011-2306 1978"],
    "max_reply_parts": 2,
    "allowed_link_domains": ["gov.in"],
}

# Notes in the forms agents really type them (SPEC section 5: internal notes fail
# closed); each suite adds one in its own platform's markup.
NOTES = [
    "NOTE : checking with the desk",
    "*note:* their cousin called too",
    "Note： full-width colon",
    "note - waiting for the desk",
    "नोट: कल फोन करें",
    "> private: quoted from the call",
]


@dataclass(frozen=True)
class Risky:
    """A reply that must wait for confirmation: as the agent means it (and as it is
    tweeted), as Slack sends it when that differs, and why it is held ({citizen} is the
    asker's username)."""

    said: str
    reason: str
    slack: str | None = None

    def on_slack(self) -> str:
        return self.slack or self.said


LONG = " ".join(f"Ward {i} at the district hospital has free beds today." for i in range(12))

RISKY = [
    pytest.param(
        Risky(
            "We called you on 98765 43210, please pick up.",
            "contains a phone number (98xxxxxx10) that is not an official number",
        ),
        id="phone",
    ),
    pytest.param(
        Risky(
            "Please ask @BloodBankDelhi directly.",
            "mentions @BloodBankDelhi, not only the citizen @{citizen}: "
            "X would notify that account",
        ),
        id="mention",
    ),
    pytest.param(
        Risky(
            "Apply at https://forms.example.com/oxygen today.",
            "links to forms.example.com, outside the allowed link domains (gov.in)",
            slack="Apply at <https://forms.example.com/oxygen> today.",
        ),
        id="link",
    ),
    pytest.param(
        Risky(
            "We wrote to asha.k@gmail.com about it.",
            "contains an e-mail address (asxxxx@gmail.com)",
            slack="We wrote to <mailto:asha.k@gmail.com|asha.k@gmail.com> about it.",
        ),
        id="email",
    ),
    pytest.param(
        Risky("Your PAN ABCPE1234F is now linked.", "contains a PAN (ABxxxxxx4F)"), id="pan"
    ),
    pytest.param(
        Risky(
            "Aadhaar 2341 2341 2346 is verified.",
            "contains an Aadhaar number (XXXX XXXX 2346)",
        ),
        id="aadhaar",
    ),
    pytest.param(
        Risky(LONG, "would go out as 3 tweets, more than the 2 allowed without confirmation"),
        id="long",
    ),
]

# Both official numbers (one a Delhi landline, written otherwise than in the settings)
# and a link inside the allowed domains: tweeted at once, as Slack sends it and as it is.
SAFE_ON_SLACK = "Call 1075 or +91 11 2306 1978, or see <https://mohfw.gov.in/oxygen> today."
SAFE = "Call 1075 or +91 11 2306 1978, or see https://mohfw.gov.in/oxygen today."


def replies_to(stand: Stand, tweet_id: str) -> list[dict[str, Any]]:
    return [t for t in stand.bot_tweets() if t["in_reply_to_tweet_id"] == tweet_id]


def chain_of(stand: Stand, root: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's reply chain to the ticket's tweet (`root["asked"]`), first part first."""
    tweets, out, to = stand.bot_tweets(), [], root["asked"]["id"]
    while (part := next((t for t in tweets if t["in_reply_to_tweet_id"] == to), None)) is not None:
        out.append(part)
        to = part["id"]
    return out
