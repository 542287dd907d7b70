"""What a reader of a Slack message sees, as plain text for X (pure; SPEC section 5).

A user mention becomes that person's display name (never an id, never an @-mention on
X), broadcasts (`<!channel>`, `<!here>`, `<!everyone>`) and user groups are dropped, a
channel becomes its name, `:emoji:` codes become the emoji, emphasis marks (`*`, `_`,
`~`, backticks) go, and a link becomes its address. Slack's `rich_text` block is read
when the message has one (it carries each emoji's `unicode` and needs no unescaping);
otherwise the `text` with its `<…>` markup (api.slack.com/reference/surfaces/formatting;
the block elements of docs.slack.dev's rich_text reference; facts-issue7 section 12).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import emoji

Lookup = Callable[[str], str | None]  # an id to a name, None when unknown

_ANGLE = re.compile(r"<([^<>]*)>")
_EMOJI_CODE = re.compile(r":([a-z0-9_+'\-]+):(?::skin-tone-([2-6]):)?")
# Emphasis only counts at word edges, as in Slack's client: snake_case stays.
_EMPHASIS = [
    re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])"),
    re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])"),
]
_CODE_BLOCK = re.compile(r"```\n?(.*?)\n?```", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_QUOTE = re.compile(r"^(?:&gt;|>) ?", re.M)
_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_BEFORE_MARK = re.compile(r"[ \t]+(?=[,.;:!?)](?:\s|$))")  # left by a dropped broadcast
_PLACEHOLDER = "\x00{}\x00"
_PLACEHOLDERS = re.compile("\x00(\\d+)\x00")
# Slack's skin-tone-2…6 (the iamcal emoji-data convention Slack follows): U+1F3FB…U+1F3FF.
SKIN_TONES = {str(n): chr(0x1F3FB + n - 2) for n in range(2, 7)}
_RICH_BLOCK = "rich_text"


def reader_text(
    event: Mapping[str, Any], user_name: Lookup, channel_name: Lookup = lambda _: None
) -> str:
    """The message as a person reading it in Slack sees it, for tweeting."""
    blocks = [b for b in event.get("blocks") or [] if isinstance(b, Mapping)]
    rich = [b for b in blocks if b.get("type") == _RICH_BLOCK]
    if rich:
        text = "\n".join(_rich_block(b, user_name, channel_name) for b in rich)
    else:
        text = text_as_read(str(event.get("text") or ""), user_name, channel_name)
    return _tidy(text)


def text_as_read(text: str, user_name: Lookup, channel_name: Lookup = lambda _: None) -> str:
    """Slack's `text` encoding as read: markup resolved, marks dropped, entities decoded."""
    kept: list[str] = []  # link addresses, kept whole through the emphasis rules

    def keep(value: str) -> str:
        kept.append(value)
        return _PLACEHOLDER.format(len(kept) - 1)

    def entity(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            return _name(target[1:], user_name)
        if target.startswith("#"):
            return label or channel_name(target[1:]) or "a channel"
        if target.startswith("!"):
            if target.startswith("!date^"):
                return label
            return ""  # broadcasts, user groups and other special mentions
        if target.startswith("mailto:"):
            return keep(target.removeprefix("mailto:"))
        return keep(_unescape(target))

    text = _ANGLE.sub(entity, text)
    text = _CODE_BLOCK.sub(lambda m: keep(m.group(1)), text)
    text = _CODE.sub(lambda m: keep(m.group(1)), text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    text = _QUOTE.sub("", text)
    text = _EMOJI_CODE.sub(_emoji_or_code, text)
    text = _unescape(text)
    return _PLACEHOLDERS.sub(lambda m: kept[int(m.group(1))], text)


def emoji_of(name: str, unicode: str | None = None) -> str | None:
    """An emoji by Slack name (`pray`, `+1`, `wave::skin-tone-2`) or by the hex code
    points Slack gives with it (`1f44b-1f3fc`); None for a workspace's custom emoji."""
    if unicode:
        try:
            return "".join(chr(int(cp, 16)) for cp in unicode.split("-"))
        except ValueError:
            pass
    base, _, tone = name.partition("::")
    found = _alias(base)
    if found is None:
        return None
    return found + SKIN_TONES.get(tone.removeprefix("skin-tone-"), "")


def _alias(name: str) -> str | None:
    for candidate in (name, name.replace("-", "_")):
        code = f":{candidate}:"
        shown = emoji.emojize(code, language="alias")
        if shown != code:
            return shown
    return None


def _emoji_or_code(match: re.Match[str]) -> str:
    """Known emoji become themselves; anything else stays as typed (`10:30:00`)."""
    found = _alias(match.group(1))
    if found is None:
        return match.group(0)
    return found + (SKIN_TONES.get(match.group(2) or "", ""))


def _rich_block(block: Mapping[str, Any], user_name: Lookup, channel_name: Lookup) -> str:
    return "\n".join(
        _container(e, user_name, channel_name)
        for e in block.get("elements") or []
        if isinstance(e, Mapping)
    )


def _container(element: Mapping[str, Any], user_name: Lookup, channel_name: Lookup) -> str:
    kind = element.get("type")
    children = [e for e in element.get("elements") or [] if isinstance(e, Mapping)]
    if kind == "rich_text_list":
        ordered = element.get("style") == "ordered"
        items = [_container(e, user_name, channel_name) for e in children]
        return "\n".join(f"{i}. {t}" if ordered else f"- {t}" for i, t in enumerate(items, 1))
    if kind in ("rich_text_section", "rich_text_quote", "rich_text_preformatted"):
        return "".join(_leaf(e, user_name, channel_name) for e in children)
    return ""


def _leaf(element: Mapping[str, Any], user_name: Lookup, channel_name: Lookup) -> str:
    kind = element.get("type")
    if kind == "text":
        return str(element.get("text") or "")
    if kind == "user":
        return _name(str(element.get("user_id") or ""), user_name)
    if kind == "channel":
        return channel_name(str(element.get("channel_id") or "")) or "a channel"
    if kind == "emoji":
        found = emoji_of(str(element.get("name") or ""), element.get("unicode"))
        tone = element.get("skin_tone")
        if found and isinstance(tone, int) and str(tone) in SKIN_TONES:
            found += SKIN_TONES[str(tone)]
        return found or ""
    if kind == "link":  # an e-mail address is read as the address, as in `text`
        return str(element.get("url") or "").removeprefix("mailto:")
    if kind == "date":
        return str(element.get("fallback") or "")
    return ""  # broadcast, usergroup, and element types added after this was written


def _name(user_id: str, user_name: Lookup) -> str:
    """A person as readers see them; never their id and never an @-mention on X."""
    user_id = user_id.partition("|")[0]
    return (user_name(user_id) or "a colleague").lstrip("@＠")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _tidy(text: str) -> str:
    lines = [
        _SPACE_BEFORE_MARK.sub("", _SPACES.sub(" ", line)).strip() for line in text.split("\n")
    ]
    return "\n".join(lines).strip()


def user_ids(event: Mapping[str, Any]) -> set[str]:
    """Everyone a message mentions (in its `text` or its `rich_text`), to look up first."""
    found = {
        m.group(1).partition("|")[0][1:]
        for m in _ANGLE.finditer(str(event.get("text") or ""))
        if m.group(1).startswith("@")
    }
    for element in _leaves(event.get("blocks") or []):
        if element.get("type") == "user" and element.get("user_id"):
            found.add(str(element["user_id"]))
    return found


def channel_ids(event: Mapping[str, Any]) -> set[str]:
    """Channels a message names without a label (rich_text gives only the id)."""
    found = set()
    for m in _ANGLE.finditer(str(event.get("text") or "")):
        target, _, label = m.group(1).partition("|")
        if target.startswith("#") and not label:
            found.add(target[1:])
    for element in _leaves(event.get("blocks") or []):
        if element.get("type") == "channel" and element.get("channel_id"):
            found.add(str(element["channel_id"]))
    return found


def _leaves(items: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    for item in items:
        if isinstance(item, Mapping):
            yield item
            yield from _leaves(item.get("elements") or [])
