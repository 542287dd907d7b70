"""X's wire format for posts, in both of its spellings (pure): what to ask for, and what
the answer means as the core's `Tweet`.

X's OpenAPI spec from 2.167 on (and its SDK, xdk 0.10) renames `tweet.fields` to
`post.fields`, `referenced_tweets` to `referenced_posts`, `note_tweet` to `note_post`,
`edit_history_tweet_ids` to `edit_history_post_ids` and `includes.tweets` to
`includes.posts`, while X's docs and its own CLI (xurl) still use the old names. An
answer is read whichever names it uses; a request uses one dialect, and the adapter
switches to the other when X refuses a field parameter by name (`dialect_refused`).
Sources: /work/notes/facts-issue7.md sections 1-6.
"""

from __future__ import annotations

import enum
import html
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from bot.domain import Media, Tweet, TweetId, XUserId


class Dialect(enum.StrEnum):
    """Which spelling of the field parameters a request uses (stored by its value)."""

    TWEET = "tweet.fields"  # X's docs, xurl, tweepy; the API as documented
    POST = "post.fields"  # X's OpenAPI 2.167+ and xdk 0.10

    @property
    def other(self) -> Dialect:
        return Dialect.POST if self is Dialect.TWEET else Dialect.TWEET


# tweet.fields (X-spec-old enum): author_id etc. are fields there.
_TWEET_FIELDS = (
    "author_id",
    "created_at",
    "conversation_id",
    "in_reply_to_user_id",
    "referenced_tweets",
    "note_tweet",
    "entities",
    "attachments",
    "edit_history_tweet_ids",
)
_TWEET_EXPANSIONS = (
    "author_id",
    "attachments.media_keys",
    "referenced_tweets.id",
    "referenced_tweets.id.author_id",
)
# post.fields (X-spec-new 2.167, GET /2/users/{id}/mentions): author_id,
# in_reply_to_user_id, referenced_posts and edit_history_post_ids are expansions only.
_POST_FIELDS = ("created_at", "conversation_id", "note_post", "entities", "attachments")
_POST_EXPANSIONS = (
    "author_id",
    "in_reply_to_user_id",
    "attachments.media_keys",
    "referenced_posts",
    "edit_history_post_ids",
)
MEDIA_FIELDS = ("type", "url", "preview_image_url", "alt_text", "variants", "duration_ms")


def timeline_params(dialect: Dialect) -> dict[str, str]:
    """The fields and expansions of a mentions or search read."""
    fields, expansions = (
        (_TWEET_FIELDS, _TWEET_EXPANSIONS)
        if dialect is Dialect.TWEET
        else (_POST_FIELDS, _POST_EXPANSIONS)
    )
    return {
        dialect.value: ",".join(fields),
        "expansions": ",".join(expansions),
        "media.fields": ",".join(MEDIA_FIELDS),
        "user.fields": "username",
    }


def own_posts_params(dialect: Dialect) -> dict[str, str]:
    """What finding our own earlier reply needs: what each post replies to, its text and
    entities (a reply with an image carries the image's t.co link in its text)."""
    if dialect is Dialect.TWEET:
        return {"tweet.fields": "referenced_tweets,created_at,entities"}
    return {"post.fields": "created_at,entities", "expansions": "referenced_posts"}


def dialect_refused(status: int, body: object, dialect: Dialect) -> bool:
    """Whether a 400 says X does not know this dialect's field parameter.

    Real captures name an unknown query parameter in `errors[].parameters` with the
    message "The query parameter [tweet.fields] is not one of [...]"; a problem's `type`
    ends in /problems/invalid-request on either host (api.twitter.com, api.x.com), and
    the newer spec puts the name in a top-level `parameter`.
    """
    if status != 400 or not isinstance(body, Mapping):
        return False
    name = dialect.value
    if body.get("parameter") == name:
        return True
    for error in body.get("errors") or []:
        if not isinstance(error, Mapping):
            continue
        parameters = error.get("parameters")
        message = str(error.get("message") or "")
        named = isinstance(parameters, Mapping) and name in parameters
        if named and f"[{name}]" in message and "is not one of" in message:
            return True
        if error.get("parameter") == name:
            return True
    return False


# --- reading an answer


def either(item: Mapping[str, Any], old: str, new: str) -> Any:
    """A field under its old name or its new one."""
    value = item.get(old)
    return item.get(new) if value is None else value


def page_tweets(body: Mapping[str, Any]) -> list[Tweet]:
    """The posts of one page, with what its `includes` say about them."""
    includes = body.get("includes") or {}
    users = {
        str(u.get("id")): str(u.get("username"))
        for u in includes.get("users") or []
        if isinstance(u, Mapping) and u.get("username")
    }
    media = {
        str(m.get("media_key")): m
        for m in includes.get("media") or []
        if isinstance(m, Mapping) and m.get("media_key")
    }
    included = {
        str(p.get("id")): p
        for p in either(includes, "tweets", "posts") or []
        if isinstance(p, Mapping) and p.get("id")
    }
    return [
        tweet(item, users, media, included)
        for item in body.get("data") or []
        if isinstance(item, Mapping) and item.get("id")
    ]


def references(item: Mapping[str, Any]) -> dict[str, str]:
    """`{type: id}` from `referenced_tweets` / `referenced_posts`."""
    refs = either(item, "referenced_tweets", "referenced_posts") or []
    return {
        str(r.get("type")): str(r.get("id"))
        for r in refs
        if isinstance(r, Mapping) and r.get("id") is not None
    }


def tweet(
    item: Mapping[str, Any],
    users: Mapping[str, str],
    media: Mapping[str, Mapping[str, Any]] | None = None,
    included: Mapping[str, Mapping[str, Any]] | None = None,
) -> Tweet:
    """One post as the core's `Tweet`: the whole text, its media, hashtags and edits."""
    refs = references(item)
    tweet_id = str(item["id"])
    author_id = str(item.get("author_id", ""))
    created = item.get("created_at")
    conversation = item.get("conversation_id")
    reply_user = item.get("in_reply_to_user_id")
    note = either(item, "note_tweet", "note_post")
    note = note if isinstance(note, Mapping) and isinstance(note.get("text"), str) else None
    entities = (note or {}).get("entities") if note else item.get("entities")
    text = str(note["text"]) if note else str(item.get("text", ""))
    attached = _media(item, media or {})
    if not note and attached:
        text = without_media_links(text, item.get("entities"))
    history = either(item, "edit_history_tweet_ids", "edit_history_post_ids") or []
    earlier = tuple(TweetId(str(h)) for h in history if str(h) != tweet_id)
    quoted = refs.get("quoted")
    quoted_item = (included or {}).get(quoted) if quoted else None
    return Tweet(
        id=TweetId(tweet_id),
        text=html.unescape(text),  # X sends &amp; &lt; &gt;
        author_id=XUserId(author_id),
        # "i" keeps the tweet link working when X withheld the author (x.com/i/status/…)
        author_username=users.get(author_id, "i"),
        created_at=datetime.fromisoformat(created) if created else None,
        conversation_id=TweetId(str(conversation)) if conversation else None,
        in_reply_to_user_id=XUserId(str(reply_user)) if reply_user else None,
        replied_to=TweetId(refs["replied_to"]) if "replied_to" in refs else None,
        quoted=TweetId(quoted) if quoted else None,
        is_retweet="retweeted" in refs,
        hashtags=_hashtags(entities),
        media=attached,
        earlier_versions=earlier,
        quoted_username=users.get(str(quoted_item.get("author_id"))) if quoted_item else None,
        quoted_text=_whole_text(quoted_item) if quoted_item else None,
    )


def _whole_text(item: Mapping[str, Any]) -> str:
    note = either(item, "note_tweet", "note_post")
    if isinstance(note, Mapping) and isinstance(note.get("text"), str):
        return html.unescape(str(note["text"]))
    return html.unescape(str(item.get("text", "")))


def _hashtags(entities: object) -> tuple[str, ...] | None:
    if not isinstance(entities, Mapping):
        return None
    tags = entities.get("hashtags") or []
    return tuple(str(t["tag"]) for t in tags if isinstance(t, Mapping) and t.get("tag"))


def _media(item: Mapping[str, Any], media: Mapping[str, Mapping[str, Any]]) -> tuple[Media, ...]:
    """The post's attachments in order; a key `includes.media` left out is skipped."""
    keys = (item.get("attachments") or {}).get("media_keys") or []
    out: list[Media] = []
    for key in keys:
        m = media.get(str(key))
        if m is None:
            continue
        kind = str(m.get("type") or "photo")
        image = str(m.get("url") or m.get("preview_image_url") or "")
        link = image if kind == "photo" else _best_video(m.get("variants") or []) or image
        duration = m.get("duration_ms")
        out.append(
            Media(
                kind=kind,
                image=image,
                link=link,
                alt_text=str(m.get("alt_text") or ""),
                duration_ms=int(duration) if isinstance(duration, int | float) else None,
            )
        )
    return tuple(out)


def _best_video(variants: Iterable[Any]) -> str:
    mp4 = [
        v
        for v in variants
        if isinstance(v, Mapping) and v.get("content_type") == "video/mp4" and v.get("url")
    ]
    if not mp4:
        return ""
    return str(max(mp4, key=lambda v: int(v.get("bit_rate") or 0))["url"])


def without_media_links(text: str, entities: object) -> str:
    """The text without the t.co links X appends for attached media (the `urls`
    entities that carry a `media_key`). Matched by the link itself rather than by
    offset, which stays right whatever X escaped in the text."""
    if not isinstance(entities, Mapping):
        return text
    for u in entities.get("urls") or []:
        if isinstance(u, Mapping) and u.get("media_key") and u.get("url"):
            text = text.replace(str(u["url"]), "")
    return text.rstrip()
