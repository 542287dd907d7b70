"""Risky replies wait for an agent's Send (SPEC section 5), on the one reply path.

Health answers directly; a reply that shows personal data, mentions someone else, or
runs long waits for Send all the same, with the reason above the exact text, and whoever
sends it is in the audit log.
"""

from __future__ import annotations

import pytest

from bot.config import parse_config
from handlers import delivery, replies
from tests.unit.conftest import CONFIG
from tests.unit.test_core_flow import ask, press, thread_msg


@pytest.fixture
def strict(world):
    """The world with safety settings: 1075 is an official number, chains of 2 at most."""
    b, x, chat, clock = world
    b.config = parse_config(
        {**CONFIG, "safety": {"official_numbers": ["1075", "011-2306 1978"], "max_reply_parts": 2}},
        "test.yaml",
    )
    return b, x, chat, clock


async def held_preview(b, x, chat, text: str):
    await ask(b, x, "@SevaHelp oxygen?")  # ticket #1, health: direct replies
    await replies.on_message(b, thread_msg(chat, "root:1", text))
    await delivery.deliver(b)
    return chat.by_key("preview:1")[1] if "preview:1" in chat.sent_keys() else None


async def test_a_citizens_phone_number_holds_the_reply_until_an_agent_sends_it(strict):
    b, x, chat, _ = strict
    preview = await held_preview(b, x, chat, "We called you on 98765 43210, please pick up.")
    assert x.posted == []
    assert preview is not None
    shown = preview.body.plain()
    assert shown.startswith("Held for confirmation: this reply contains a phone number")
    assert "98xxxxxx10" in shown and "not an official number" in shown
    assert "> We called you on 98765 43210, please pick up." in shown  # the exact text
    send, _ = preview.actions
    await replies.on_action(b, press(send, "U0VISITOR"))  # not one of health's agents
    await delivery.deliver(b)
    assert x.posted == []
    await replies.on_action(b, press(send, "U0AGENT1"))
    await delivery.deliver(b)
    assert [t for _, t, _ in x.posted] == ["We called you on 98765 43210, please pick up."]
    audit = await b.store.run(lambda tx: [(e.actor, e.detail) for e in tx.audit_log(1)])
    assert ("U0AGENT1", "confirmed") in audit
    held = [d for a, d in audit if d.startswith("held: ")]
    assert held == ["held: contains a phone number (98xxxxxx10) that is not an official number"]


@pytest.mark.parametrize(
    "text",
    [
        "Call the helpline 1075 any time.",
        "Call the ministry on +91 11 2306 1978.",  # the configured 011-2306 1978
        "@citizen we have shared this with the hospital.",  # the citizen themself
        "Thank you for waiting.",
    ],
)
async def test_safe_replies_go_straight_out(strict, text):
    b, x, chat, _ = strict
    assert await held_preview(b, x, chat, text) is None
    assert [t for _, t, _ in x.posted] == [text]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Please write to asha.verma@gmail.com", "contains an e-mail address"),
        ("Your Aadhaar 2341 2341 2346 is linked.", "contains an Aadhaar number"),
        ("PAN ABCPE1234F is on file.", "contains a PAN"),
        ("Ask @HealthMinistry about it.", "mentions @HealthMinistry, not only the citizen"),
        (" ".join(["Beds are free at ward nine today."] * 20), "would go out as 3 tweets"),
    ],
)
async def test_each_risk_holds_with_its_reason(strict, text, reason):
    b, x, chat, _ = strict
    preview = await held_preview(b, x, chat, text)
    assert x.posted == []
    assert preview is not None and reason in preview.body.plain()


async def test_a_link_outside_the_allowed_domains_holds(world):
    b, x, chat, _ = world
    b.config = parse_config({**CONFIG, "safety": {"allowed_link_domains": ["gov.in"]}}, "t.yaml")
    preview = await held_preview(b, x, chat, "Details: https://mohfw.gov.in and bit.ly/x1")
    assert preview is not None
    assert "links to bit.ly, outside the allowed link domains (gov.in)" in preview.body.plain()


async def test_cancel_of_a_held_reply_tweets_nothing(strict):
    b, x, chat, _ = strict
    preview = await held_preview(b, x, chat, "Your PAN ABCPE1234F is on file.")
    assert preview is not None
    _, cancel = preview.actions
    await replies.on_action(b, press(cancel, "U0AGENT1"))
    await delivery.deliver(b)
    assert x.posted == []
    ((_, body),) = chat.updates
    assert body.plain().startswith("Cancelled by U0AGENT1")


async def test_a_dotted_run_x_would_read_slowly_is_held_not_read(world):
    """twitter_text reads 3,000 characters of "x.x.x…" in ten seconds (inside the
    transaction that queues the reply); the hold takes such a run whole as one link
    instead of reading it, so it is held where links are limited, and said so."""
    b, x, chat, _ = world
    b.config = parse_config({**CONFIG, "safety": {"allowed_link_domains": ["gov.in"]}}, "t.yaml")
    preview = await held_preview(b, x, chat, "See " + "x." * 1500 + "in")
    assert preview is not None and "links to x.x.x." in preview.body.plain()
