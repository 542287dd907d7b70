"""`Rich` bodies as Slack mrkdwn and blocks, and the metadata that carries a post's key
(pure). Everything that came from outside is escaped: it can never ping `@channel`,
mention someone or forge a link."""

from __future__ import annotations

import re
from typing import Any

from bot.domain import Link, Mention, Outgoing, Quote, Rich, Text

TICKET_EVENT = "seva_ticket"  # a thread root's metadata (SPEC section 4)
POST_EVENT = "seva_post"  # every other post's

SECTION_LIMIT = 3000
MAX_SECTIONS = 49  # and one actions block: Slack's limit is 50
BUTTON_LABEL_LIMIT = 75

_ZWJ = "\u200d"
_BROADCAST_RE = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SAFE_URL_RE = re.compile(r"^https?://[^\s|<>]+$", re.IGNORECASE)


def escape_mrkdwn(text: str) -> str:
    """Makes outside text inert: no `<!channel>`, `<@U…>`, forged links or `@here` pings."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST_RE.sub("@" + _ZWJ, escaped)


def _bold(text: str) -> str:
    # mrkdwn bold must hug non-space characters and cannot span lines.
    out = []
    for line in text.split("\n"):
        core = line.strip()
        if not core:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        trail = line[len(line.rstrip()) :]
        out.append(f"{lead}*{core}*{trail}")
    return "\n".join(out)


def _link(url: str, label: str) -> str:
    safe_label = escape_mrkdwn(label.replace("\n", " "))
    if not _SAFE_URL_RE.match(url):
        # Not a link we are willing to build: show it as inert text.
        shown = escape_mrkdwn(url)
        return f"{safe_label} ({shown})" if label and label != url else shown
    target = url.replace("&", "&amp;")
    return f"<{target}|{safe_label}>" if label else f"<{target}>"


def render_mrkdwn(rich: Rich) -> str:
    """Slack mrkdwn for a `Rich` body; everything that came from outside is escaped."""
    out: list[str] = []

    def at_line_start() -> bool:
        return not out or out[-1].endswith("\n")

    after_quote = False
    for seg in rich.segments:
        if after_quote and not (isinstance(seg, Text) and seg.text.startswith("\n")):
            out.append("\n")
        after_quote = False
        match seg:
            case Text(text=t, bold=b):
                out.append(_bold(escape_mrkdwn(t)) if b else escape_mrkdwn(t))
            case Mention(user=u):
                out.append(f"<@{u}>" if _USER_ID_RE.match(u) else escape_mrkdwn(f"@{u}"))
            case Link(url=url, label=label):
                out.append(_link(url, label))
            case Quote(text=t):
                if not at_line_start():
                    out.append("\n")
                lines = t.splitlines() or [""]
                out.append("\n".join(">" + escape_mrkdwn(line) for line in lines))
                after_quote = True
    return "".join(out)


def metadata(message: Outgoing) -> dict[str, Any]:
    """The message metadata that lets `find` recognise this post after a crash."""
    if message.is_root:
        return {
            "event_type": TICKET_EVENT,
            "event_payload": {
                "ticket": message.ticket,
                "tweet_id": str(message.tweet_id or ""),
                "key": message.key,
            },
        }
    payload: dict[str, Any] = {"key": message.key}
    if message.ticket is not None:
        payload["ticket"] = message.ticket
    return {"event_type": POST_EVENT, "event_payload": payload}


def sections(text: str) -> list[str]:
    """Mrkdwn in pieces a section block takes, cut at line ends: a long preview shows
    whole (Slack allows 50 blocks; a reply chain's preview is far below that)."""
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > SECTION_LIMIT:
            out.append(line[:SECTION_LIMIT])
            line = line[SECTION_LIMIT:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > SECTION_LIMIT:
            out.append(current)
            candidate = line
        current = candidate
    out.append(current)
    return [piece or " " for piece in out][:MAX_SECTIONS]


def blocks(text: str, message: Outgoing) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = []
    for i, action in enumerate(message.actions):
        label = action.label[:BUTTON_LABEL_LIMIT] or action.id
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action.id,
            "value": action.value,
            "text": {"type": "plain_text", "text": label, "emoji": True},
        }
        if i == 0:
            button["style"] = "primary"
        buttons.append(button)
    return [
        *(
            {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
            for piece in sections(text)
        ),
        {"type": "actions", "elements": buttons},
    ]
