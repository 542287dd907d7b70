"""No tweet can ping, mention, link or inject markup in chat, whatever its Unicode.

A tweet's text and its author's names are written by strangers and shown to every
member of a department's channel. Whatever they contain (control and format
characters, RTL overrides, zero-width and combining characters, full-width
look-alikes, Slack and Matrix markup, HTML), the message rendered for Slack and for
Matrix may hold only the mentions and links the bot itself put there, and must show
the stranger's words as they were written. A fixed, derandomised budget keeps CI
time bounded and every run the same.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.matrix.render import render as render_matrix
from adapters.slack.render import render_mrkdwn
from bot.domain import ChatUserId, Link, Mention, Quote, Rich, Segment, Text, tweet_url

BUDGET = settings(max_examples=300, deadline=None, derandomize=True)

SLACK_AGENT = ChatUserId("U0AGENT1")
MATRIX_AGENT = ChatUserId("@agent:example.org")
TWEET_URL = tweet_url("asha_k", "1790123456789012345")
PILL_HREF = "https://matrix.to/#/" + quote(MATRIX_AGENT, safe="@:")

HOSTILE = (
    # Slack markup: broadcasts, user and channel mentions, user groups, forged links.
    "<!channel>", "<!here>", "<!everyone>", "<!here|here>", "<@U0AGENT1>", "<@W123|boss>",
    "<#C0HEALTH|general>", "<!subteam^S123|@oncall>", "<http://evil.example|innocent>",
    "<https://evil.example>", "<mailto:a@evil.example|mail>", "@here", "@channel",
    "@everyone", "@Here!",
    # Matrix: room pings and user pills.
    "@room", "@ROOM", "@room:", "https://matrix.to/#/@evil:example.org",
    "https://matrix.to/#/!room:example.org", "@evil:example.org",
    # Look-alikes and entities that must stay literal.
    "＠room", "＠here", "＜!channel＞", "﹤!here﹥", "&lt;!channel&gt;", "&amp;lt;", "&#60;",
    "&#x3c;b&#x3e;", "&gt;", "&",
    # HTML.
    "<b>bold</b>", '<a href="https://evil.example">x</a>', "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>", "<!-- c -->", "<![CDATA[x]]>", "</blockquote>", "<br>",
    "</a>", "<", ">", '"', "'", "<\u0338",
    # Slack mrkdwn emphasis and quotes.
    "*", "_", "~", "`", "```", "> quote", "\n>", "|",
    # Control, format and combining characters.
    "\u202e", "\u202d", "\u2066", "\u2069", "\u200b", "\u200d", "\u2060", "\ufeff",
    "\u0301", "\u0338", "\x00", "\x1b[31m", "\r", "\r\n", "\n", "\u2028", "\u0085", "\x0b",
)  # fmt: skip

hostile_text = st.lists(
    st.one_of(
        st.sampled_from(HOSTILE),
        st.text(max_size=8),
        st.characters(categories=("Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp", "Sm")),
    ),
    max_size=12,
).map("".join)


def ticket_root(text: str, name: str, username: str, agent: ChatUserId) -> Rich:
    """A message of every shape the bot builds around a stranger's words."""
    return Rich.of(
        Text("Ticket #42", bold=True),
        Text(" · Health\n"),
        Text(name, bold=True),
        Text(f" (@{username}) asked on X:\n"),
        Quote(text),
        Text("\n"),
        Text(text),
        Text("\n"),
        Link(TWEET_URL, "Open on X"),
        Text(" · "),
        Link(TWEET_URL, name),
        Text(" · on call: "),
        Mention(agent),
    )


# --- Slack ------------------------------------------------------------------------

ANGLE = re.compile(r"<[^<>]*>")
QUOTE_MARK = re.compile(r"^>", re.MULTILINE)
BROADCAST = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)


@BUDGET
@given(text=hostile_text, name=hostile_text, username=hostile_text)
def test_slack_shows_only_our_mention_and_links(text: str, name: str, username: str) -> None:
    mrkdwn = render_mrkdwn(ticket_root(text, name, username, SLACK_AGENT))

    constructs = ANGLE.findall(mrkdwn)
    assert constructs.count(f"<@{SLACK_AGENT}>") == 1
    links = [c for c in constructs if c == f"<{TWEET_URL}>" or c.startswith(f"<{TWEET_URL}|")]
    assert len(links) == 2
    assert len(constructs) == 3, constructs  # nothing else Slack would read as markup
    # Besides those, the only angle brackets are the marks that start our quote's lines.
    assert len(QUOTE_MARK.findall(mrkdwn)) == len(text.splitlines() or [""])
    leftover = QUOTE_MARK.sub("", ANGLE.sub("", mrkdwn))
    assert "<" not in leftover and ">" not in leftover
    assert "<!" not in mrkdwn
    assert BROADCAST.search(mrkdwn) is None


# --- Matrix -----------------------------------------------------------------------

OUR_TAGS = {"strong", "a", "br", "blockquote"}


class _Reader(HTMLParser):
    """What Element would build from `formatted_body`: tags, links and visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.other: list[str] = []  # comments, declarations, processing instructions
        self.visible: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            assert (tag, name) == ("a", "href"), (tag, name)
            self.hrefs.append(value or "")
        if tag == "br":
            self.visible.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.visible.append(data)

    def handle_comment(self, data: str) -> None:
        self.other.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.other.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.other.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.other.append(f"unknown declaration {data!r}")


def _shown(segment: Segment) -> str:
    match segment:
        case Text(text=t) | Quote(text=t):
            return t
        case Link(url=url, label=label):
            return label or url
        case Mention(user=u):
            return u
    raise TypeError(segment)


def _without_defusing(text: str) -> str:
    return text.replace("\u2060", "").replace("\r\n", "\n")


@BUDGET
@given(text=hostile_text, name=hostile_text, username=hostile_text)
def test_matrix_shows_only_our_pill_and_links_and_the_words_as_written(
    text: str, name: str, username: str
) -> None:
    rich = ticket_root(text, name, username, MATRIX_AGENT)
    rendered = render_matrix(rich)

    reader = _Reader()
    reader.feed(rendered.formatted_body)
    reader.close()
    assert set(reader.tags) <= OUR_TAGS
    assert reader.other == []
    assert sorted(reader.hrefs) == sorted([PILL_HREF, TWEET_URL, TWEET_URL])
    assert rendered.user_ids == [MATRIX_AGENT]
    # A room ping needs "@room" in the text; it is always broken by a word joiner.
    assert re.search("@room", rendered.body, re.IGNORECASE) is None
    assert re.search("@room", "".join(reader.visible), re.IGNORECASE) is None
    # And the reader sees what the stranger wrote: nothing was taken as markup.
    shown = "".join(_shown(s) for s in rich.segments)
    assert _without_defusing("".join(reader.visible)) == _without_defusing(shown)
