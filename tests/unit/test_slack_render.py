"""Rendering to Slack mrkdwn: nothing from outside can ping, mention or forge a link."""

from __future__ import annotations

import re

import pytest

from adapters.slack.parse import slack_to_plain
from adapters.slack.render import render_mrkdwn
from bot.addressing import command_text
from bot.domain import ChatUserId, Link, Mention, Quote, Rich, Text

# What Slack turns into a live ping, mention or link: `<…>` markup, and `@here` & co.
LIVE_MARKUP = re.compile(r"<[^>]*>")
LIVE_BROADCAST = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)


def live_markup(mrkdwn: str) -> list[str]:
    return LIVE_MARKUP.findall(mrkdwn)


@pytest.mark.parametrize(
    "hostile",
    [
        "<!channel> water is out",
        "<!here>",
        "<!everyone|everyone>",
        "ping <@U123> now",
        "<http://evil.example|innocent>",
        "<#C0HEALTH|general>",
        "<!subteam^S123|@oncall>",
    ],
)
@pytest.mark.parametrize("wrap", [Text, Quote, lambda t: Text(t, bold=True)])
def test_untrusted_markup_is_inert(hostile: str, wrap) -> None:
    out = render_mrkdwn(Rich((wrap(hostile),)))
    assert live_markup(out) == []
    assert "&lt;" in out and "&gt;" in out


def test_ampersand_is_escaped_so_entities_cannot_be_smuggled() -> None:
    out = render_mrkdwn(Rich.of("A & B &lt;!channel&gt;"))
    assert out == "A &amp; B &amp;lt;!channel&amp;gt;"


@pytest.mark.parametrize("word", ["@here", "@channel", "@everyone", "@HERE", "hi @channel!"])
def test_literal_broadcast_words_cannot_ping(word: str) -> None:
    out = render_mrkdwn(Rich((Text(word), Quote(word), Link("https://x.com/a", word))))
    assert LIVE_BROADCAST.search(out) is None
    assert "\u200d" in out  # still readable: '@' + zero-width joiner + word


def test_an_email_like_word_is_untouched() -> None:
    assert render_mrkdwn(Rich.of("mail here@example.org")) == "mail here@example.org"


def test_mentions_we_build_are_live() -> None:
    out = render_mrkdwn(Rich.of("on call: ", Mention(ChatUserId("U0AGENT1"))))
    assert out == "on call: <@U0AGENT1>"


def test_a_mention_that_is_not_a_user_id_stays_inert() -> None:
    out = render_mrkdwn(Rich.of(Mention(ChatUserId("!channel"))))
    assert live_markup(out) == []


def test_links_we_build_are_live_with_escaped_labels() -> None:
    out = render_mrkdwn(Rich.of(Link("https://x.com/asha/status/1?a=1&b=2", "tweet <1> & more")))
    assert out == "<https://x.com/asha/status/1?a=1&amp;b=2|tweet &lt;1&gt; &amp; more>"


def test_a_link_without_label_is_bare() -> None:
    assert render_mrkdwn(Rich.of(Link("https://x.com/a", ""))) == "<https://x.com/a>"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "https://ok.example|forged",
        "https://ok.example>x",
        "https://ok.example/<!here>",
        "https://ok.example/ with space",
        "slack://channel?id=C1",
    ],
)
def test_a_label_can_never_forge_a_link(url: str) -> None:
    out = render_mrkdwn(Rich.of(Link(url, "innocent")))
    assert live_markup(out) == []
    assert "innocent" in out


def test_a_label_cannot_close_the_link_early() -> None:
    out = render_mrkdwn(Rich.of(Link("https://good.example", "x><http://evil|click")))
    assert live_markup(out) == ["<https://good.example|x&gt;&lt;http://evil|click>"]


def test_quote_prefixes_every_line_and_starts_on_its_own_line() -> None:
    body = Rich.of(Text("New ticket", bold=True), Quote("line one\n<!here> two\n\nfour"), "after")
    out = render_mrkdwn(body)
    assert out == "*New ticket*\n>line one\n>&lt;!here&gt; two\n>\n>four\nafter"


def test_bold_hugs_text_on_each_line() -> None:
    assert render_mrkdwn(Rich((Text(" #42 open ", bold=True),))) == " *#42 open* "
    assert render_mrkdwn(Rich((Text("a\nb", bold=True),))) == "*a*\n*b*"


def test_incoming_slack_markup_becomes_what_the_person_typed() -> None:
    raw = "Fixed &amp; done &lt;3 see <https://x.com/a|x.com/a> cc <@U0LEAD|lead> <!here>"
    assert slack_to_plain(raw) == "Fixed & done <3 see x.com/a cc @U0LEAD @here"


def test_incoming_labelled_link_keeps_both() -> None:
    assert slack_to_plain("<https://a.example/x|the form>") == "the form (https://a.example/x)"


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("!close", "close"),
        ("  !ticket status 4", "status 4"),
        ("!TICKET close 4 duplicate", "close 4 duplicate"),
        ("!ticket", ""),
        ("!tickets", "tickets"),
        ("! claim", "claim"),
        ("thanks!", None),
        ("note: !close", None),
    ],
)
def test_bang_commands(typed: str, command: str | None) -> None:
    assert command_text(typed) == command


def test_a_long_preview_is_shown_whole_acrosssections() -> None:
    from adapters.slack.render import sections

    lines = [f"> part {i}: " + "word " * 60 for i in range(40)]
    pieces = sections("\n".join(lines))
    assert len(pieces) > 1 and all(len(p) <= 3000 for p in pieces)
    assert "\n".join(pieces) == "\n".join(lines)


def test_a_message_addressed_to_the_bot_is_a_command_not_a_reply() -> None:
    assert command_text(slack_to_plain("<@UBOTSEVA> close resolved"), ["@UBOTSEVA"]) == (
        "close resolved"
    )
    assert command_text(slack_to_plain("<@UBOTSEVA|seva> ticket status 4"), ["@UBOTSEVA"]) == (
        "status 4"
    )
    assert command_text(slack_to_plain("<@U0LEAD> can you look?"), ["@UBOTSEVA"]) is None
    assert command_text("!close", ["@UBOTSEVA"]) == "close"
