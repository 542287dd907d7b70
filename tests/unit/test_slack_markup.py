"""What reaches X from a Slack message is what its reader sees (SPEC section 5)."""

from __future__ import annotations

from adapters.slack.markup import channel_ids, emoji_of, reader_text, text_as_read, user_ids

NAMES = {"U0AGENT2": "Vikram", "U0LEAD": "@meera"}


def names(user_id: str) -> str | None:
    return NAMES.get(user_id)


def channels(channel_id: str) -> str | None:
    return {"C0HEALTH": "health"}.get(channel_id)


def read(text: str) -> str:
    return reader_text({"text": text}, names, channels)


def test_people_are_names_never_ids_or_mentions_on_x() -> None:
    assert read("ask <@U0AGENT2> or <@U0LEAD|meera>") == "ask Vikram or meera"
    assert read("<@U0UNKNOWN> will call") == "a colleague will call"


def test_broadcasts_and_groups_are_dropped_channels_named() -> None:
    assert read("<!channel> <!here|here> <!subteam^S123|@oncall> see <#C9|general>") == (
        "see general"
    )
    assert read("in <#C0HEALTH>") == "in health"


def test_links_become_their_address() -> None:
    assert read("see <https://mohfw.gov.in/a_b?x=1&amp;y=2|the guidelines>") == (
        "see https://mohfw.gov.in/a_b?x=1&y=2"
    )
    assert read("mail <mailto:help@gov.in|help@gov.in>") == "mail help@gov.in"
    # As Slack's client sends a typed address: in `text` and in the rich_text block.
    link = {"type": "link", "url": "mailto:help@gov.in", "text": "help@gov.in"}
    section = {"type": "rich_text_section", "elements": [{"type": "text", "text": "mail "}, link]}
    event = {"text": "x", "blocks": [{"type": "rich_text", "elements": [section]}]}
    assert reader_text(event, names, channels) == "mail help@gov.in"


def test_emoji_and_emphasis_read_as_written() -> None:
    assert read("*Thank you* :pray: _stay_ ~safe~ `1075` :+1::skin-tone-3:") == (
        "Thank you 🙏 stay safe 1075 👍🏼"
    )
    assert read("call at 10:30:00, file_name_here, 2*3*4") == (
        "call at 10:30:00, file_name_here, 2*3*4"
    )
    assert read(":partyparrot: ok") == ":partyparrot: ok"  # unknown: left as typed
    assert read("```code\nblock```") == "code\nblock"
    assert read("&gt; quoted &lt;b&gt; &amp;") == "quoted <b> &"


def test_rich_text_is_preferred_with_its_unicode() -> None:
    # The capture golden message_rich_text.json, with a custom emoji and a broadcast.
    event = {
        "text": "<#C043YJGBY49|general> :cat: <@U0AGENT2> <https://google.com> text",
        "blocks": [
            {
                "type": "rich_text",
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [
                            {"type": "channel", "channel_id": "C0HEALTH"},
                            {"type": "text", "text": " "},
                            {"type": "emoji", "name": "cat", "unicode": "1f431"},
                            {"type": "text", "text": " "},
                            {"type": "user", "user_id": "U0AGENT2"},
                            {"type": "text", "text": " "},
                            {"type": "link", "url": "https://google.com", "text": "Google"},
                            {"type": "text", "text": " text", "style": {"bold": True}},
                            {"type": "broadcast", "range": "here"},
                            {"type": "emoji", "name": "partyparrot"},
                        ],
                    },
                    {
                        "type": "rich_text_list",
                        "style": "ordered",
                        "elements": [
                            {
                                "type": "rich_text_section",
                                "elements": [{"type": "text", "text": "one"}],
                            },
                            {
                                "type": "rich_text_section",
                                "elements": [{"type": "text", "text": "two"}],
                            },
                        ],
                    },
                ],
            }
        ],
    }
    assert (
        reader_text(event, names, channels)
        == "health 🐱 Vikram https://google.com text\n1. one\n2. two"
    )
    assert user_ids(event) == {"U0AGENT2"}
    assert channel_ids(event) == {"C0HEALTH"}


def test_emoji_names_and_code_points() -> None:
    assert emoji_of("wave::skin-tone-2") == "👋🏻"
    assert emoji_of("anything", "1f44b-1f3fc") == "👋🏼"
    assert emoji_of("partyparrot") is None
    assert text_as_read(":white_check_mark: done", names) == "✅ done"


def test_an_edit_is_a_person_changing_what_readers_see() -> None:
    from adapters.slack.parse import edited_message

    def changed(message: dict, previous_text: str) -> dict:
        # docs.slack.dev/reference/events/message/message_changed: no top-level user
        return {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": "C0HEALTH",
            "ts": "1700000009.000200",
            "message": {"type": "message", "ts": "1700000005.000100", **message},
            "previous_message": {"type": "message", "text": previous_text},
        }

    reply = {"user": "U0AGENT1", "text": "until 8 pm", "thread_ts": "1700000001.000100"}
    msg = edited_message(changed(reply, "until 6 pm"), "UBOTSEVA", "Ev1")
    assert msg is not None and msg.edited
    assert (msg.id, msg.thread_root, msg.sender) == (
        "1700000005.000100",
        "1700000001.000100",
        "U0AGENT1",
    )
    broadcast = {**reply, "subtype": "thread_broadcast"}
    assert edited_message(changed(broadcast, "until 6 pm"), "UBOTSEVA") is not None
    assert edited_message(changed(reply, "until 8 pm"), "UBOTSEVA") is None  # an unfurl
    bot = {**reply, "bot_id": "B1"}
    assert edited_message(changed(bot, "x"), "UBOTSEVA") is None
