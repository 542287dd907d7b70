"""A citizen's post that shows personal data (SPEC section 5): its thread message says
what it shows and offers the safety reply, which an agent sends with one press."""

from __future__ import annotations

from bot.domain import ChannelId, ChatAction, ChatUserId, TweetId
from bot.outbox import ActionId
from bot.safety import personal_data_reply
from handlers import delivery, ingest, replies
from handlers.privacy import parse_privacy_value, privacy_value
from tests.fakes import tweet
from tests.unit.test_core_flow import ask


def press(action, user: str, channel: str = "C0HEALTH") -> ChatAction:
    return ChatAction("slack", ChannelId(channel), action.id, action.value, ChatUserId(user))


async def test_the_root_says_what_it_contains_and_offers_the_safety_reply(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen please, call me on 98765 43210, Aadhaar 2341 2341 2346")
    root = chat.by_key("root:1")[1]
    shown = root.body.plain()
    assert "contains: phone number, Aadhaar number" in shown
    reply = personal_data_reply(["phone number", "Aadhaar number"])
    assert "> " + reply in shown
    (action,) = root.actions
    assert action.id == ActionId.PRIVACY_REPLY and action.label == "Send the safety reply"
    # Where "contains" sits: after the question and its link, before who is on call.
    assert shown.index("Open on X") < shown.index("contains:") < shown.index("On call")

    await replies.on_action(b, press(action, "U0VISITOR"))  # not one of health's agents
    await delivery.deliver(b)
    assert x.posted == []
    assert [body.plain() for _, body in chat.responses] == [
        "Only Health's agents can answer in public."
    ]
    await replies.on_action(b, press(action, "U0AGENT1"))
    await replies.on_action(b, press(action, "U0AGENT1"))  # pressed twice: tweeted once
    await delivery.deliver(b)
    assert [(text, to) for _, text, to in x.posted] == [(reply, "10")]
    assert chat.responses[-1][1].plain() == "The safety reply to that post was sent already."
    assert "sent:1" in chat.sent_keys()  # the thread gets the link as for any reply


async def test_a_post_without_personal_data_offers_nothing(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen at the district hospital? ticket #42, train 12951")
    root = chat.by_key("root:1")[1]
    assert "contains:" not in root.body.plain() and root.actions == ()


async def test_a_follow_up_with_personal_data_gets_its_own_safety_reply(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    x.mentions_queue.append(tweet(20, "@SevaHelp mail me at asha.v@gmail.com", replied_to="10"))
    await ingest.poll(b)
    await delivery.deliver(b)
    follow = chat.by_key("followup:20")[1]
    assert "contains: e-mail address" in follow.body.plain()
    (action,) = follow.actions
    await replies.on_action(b, press(action, "U0AGENT1"))
    await delivery.deliver(b)
    assert [(text, to) for _, text, to in x.posted] == [
        (personal_data_reply(["e-mail address"]), "20")  # the post that shows it
    ]


async def test_in_confirm_mode_the_press_is_the_confirmation(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp train late #railways, my number 98765 43210")  # transport
    (action,) = chat.by_key("root:1")[1].actions
    await replies.on_action(b, press(action, "U0X", "C0TRANSPORT"))
    await delivery.deliver(b)
    assert [text for _, text, _ in x.posted] == [personal_data_reply(["phone number"])]
    assert "preview:1" not in chat.sent_keys()
    audit = await b.store.run(lambda tx: [(e.actor, e.detail) for e in tx.audit_log(1)])
    assert ("U0X", "queued") in audit


async def test_a_forged_value_naming_another_tickets_post_changes_nothing(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen, call 98765 43210")
    (action,) = chat.by_key("root:1")[1].actions
    forged = ChatAction(
        "slack",
        ChannelId("C0HEALTH"),
        action.id,
        privacy_value(1, TweetId("999"), ["phone number"]),
        ChatUserId("U0AGENT1"),
    )
    await replies.on_action(b, forged)
    await delivery.deliver(b)
    assert x.posted == []


def test_the_value_round_trips_and_rejects_junk():
    value = privacy_value(12, TweetId("1860"), ["phone number", "PAN"])
    wanted = parse_privacy_value(value)
    assert wanted is not None
    assert (wanted.ticket, wanted.tweet_id, wanted.kinds) == (12, "1860", ("phone number", "PAN"))
    for junk in ("", "12", "x:1860:0", "12:1860:9", "12:1860:a"):
        assert parse_privacy_value(junk) is None
