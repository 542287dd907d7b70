"""The real X adapter (tweepy over HTTP) against the X stand-in: what the bridge relies on."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from adapters.db.store import Store
from adapters.x import XClient
from bot.domain import TweetId
from bot.ports import CredentialsRefused, RateLimited, TweetRefused, Unavailable
from bot.tweettext import split_reply
from sandbox.x.routes import build_x_app
from sandbox.x.state import XState


class FakeClock:
    """One clock for the stand-in (Unix seconds) and the adapter (the Clock port)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class X:
    state: XState
    clock: FakeClock
    base_url: str

    @property
    def me(self) -> str:
        return self.state.account.id

    def client(self, *, bearer: bool = True, **overrides: Any) -> XClient:
        s = self.state
        kwargs: dict[str, Any] = {
            "consumer_key": s.api_key,
            "consumer_secret": s.api_secret,
            "access_token": s.access_token,
            "access_token_secret": s.access_token_secret,
            "bearer_token": s.bearer_token if bearer else None,
            "base_url": self.base_url,
            "timeout": 10.0,
            "clock": self.clock,
        }
        kwargs.update(overrides)
        return XClient(**kwargs)

    def calls(self, path_part: str, method: str = "GET") -> list[Any]:
        return [r for r in self.state.requests if r.method == method and path_part in r.path]


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def x() -> AsyncIterator[X]:
    clock = FakeClock()
    state = XState(clock=clock)
    root = web.Application()
    root.add_subapp("/x", build_x_app(state))
    runner, origin = await _serve(root)
    yield X(state, clock, origin + "/x")
    await runner.cleanup()


def _reset_of(x: X, endpoint: str) -> datetime:
    return datetime.fromtimestamp(x.state.limit_status()[endpoint]["reset"], UTC)


# --- TweetSource ----------------------------------------------------------------------


async def test_me_is_asked_once(x: X) -> None:
    client = x.client()
    first = await client.me()
    assert (first.id, first.username) == (x.me, "SevaHelp")
    assert await client.me() == first
    assert len(x.calls("/2/users/me")) == 1
    assert x.calls("/2/users/me")[0].auth == "oauth1"


async def test_250_mentions_come_back_once_each_newest_first(x: X) -> None:
    posted = [x.state.tweet(f"citizen{i % 7}", f"@SevaHelp query {i}") for i in range(250)]
    x.state.tweet("bystander", "not for the desk")

    mentions = await x.client().mentions(None)

    assert [t.id for t in mentions] == [t["id"] for t in reversed(posted)]
    assert [t.text for t in mentions[:2]] == ["@SevaHelp query 249", "@SevaHelp query 248"]
    assert {t.author_username for t in mentions} == {f"citizen{i}" for i in range(7)}
    assert all(t.author_username == f"citizen{int(t.text.split()[-1]) % 7}" for t in mentions)
    assert len(x.calls("/mentions")) == 3  # pages of 100, 100, 50
    assert {r.auth for r in x.calls("/mentions")} == {"bearer"}


async def test_since_id_is_respected(x: X) -> None:
    posted = [x.state.tweet("asha", f"@SevaHelp query {i}")["id"] for i in range(250)]
    client = x.client()
    newer = await client.mentions(TweetId(posted[199]))
    assert [t.id for t in newer] == list(reversed(posted[200:]))
    assert await client.mentions(TweetId(posted[-1])) == []


async def test_no_mentions_is_an_empty_list(x: X) -> None:
    x.state.tweet("asha", "talking to nobody")
    assert await x.client().mentions(None) == []
    assert len(x.calls("/mentions")) == 1


async def test_mentions_carry_what_routing_and_threading_need(x: X) -> None:
    s = x.state
    own = s.tweet("SevaHelp", "Vaccination camp today")
    question = s.tweet("asha", "@SevaHelp which camp? A & B <both>?")
    follow_up = s.tweet("asha", "any news?", in_reply_to_tweet_id=own["id"])
    quote = s.tweet("ravi", "@SevaHelp is this true?", quote_tweet_id=own["id"])
    retweet = s.tweet("meena", "", retweet_of_tweet_id=question["id"])
    s.tweet("SevaHelp", "@SevaHelp note to self")  # its own tweet: never a mention

    by_id = {t.id: t for t in await x.client().mentions(None)}

    assert set(by_id) == {question["id"], follow_up["id"], quote["id"], retweet["id"]}
    q = by_id[question["id"]]
    assert q.text == "@SevaHelp which camp? A & B <both>?"  # X's &amp; undone
    assert q.author_username == "asha"
    assert q.url == f"https://x.com/asha/status/{question['id']}"
    assert q.conversation_id == question["id"]
    assert q.created_at is not None and q.created_at.tzinfo is not None
    assert abs((q.created_at - x.clock.now()).total_seconds()) < 1
    assert not q.is_retweet and q.replied_to is None
    f = by_id[follow_up["id"]]
    assert (f.replied_to, f.conversation_id, f.in_reply_to_user_id) == (own["id"], own["id"], x.me)
    assert by_id[quote["id"]].quoted == own["id"]
    assert by_id[retweet["id"]].is_retweet


async def test_reads_fall_back_to_user_context_without_a_bearer(x: X) -> None:
    x.state.tweet("asha", "@SevaHelp hi")
    assert len(await x.client(bearer=False).mentions(None)) == 1
    assert {r.auth for r in x.calls("/mentions")} == {"oauth1"}


async def test_429_raises_rate_limited_with_the_reset_and_no_retry(x: X) -> None:
    x.state.tweet("asha", "@SevaHelp hi")
    client = x.client()
    await client.me()
    x.state.set_limit("mentions", 0)

    with pytest.raises(RateLimited) as e:
        await client.mentions(None)

    assert e.value.until == _reset_of(x, "mentions")
    assert e.value.until > x.clock.now()
    assert len(x.calls("/mentions")) == 1  # no retry storm


async def test_limit_running_out_mid_paging_stops_before_a_429(x: X) -> None:
    posted = [x.state.tweet("asha", f"@SevaHelp query {i}")["id"] for i in range(250)]
    client = x.client()
    x.state.set_limit("mentions", 2)

    with pytest.raises(RateLimited) as e:
        await client.mentions(None)
    assert e.value.until == _reset_of(x, "mentions")
    assert [r.status for r in x.calls("/mentions")] == [200, 200]

    # The caller polls again after the reset; nothing was lost.
    x.clock.t = e.value.until.timestamp()
    x.state.set_limit("mentions", 300)
    again = await client.mentions(None)
    assert [t.id for t in again] == list(reversed(posted))


async def test_server_errors_and_dead_hosts_are_unavailable(x: X) -> None:
    client = x.client()
    await client.me()
    x.state.add_fault("GET", "/2/users/", 503)
    with pytest.raises(Unavailable):
        await client.mentions(None)
    assert await client.mentions(None) == []  # the fault was one request long

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/x"  # bound, never listening
        with pytest.raises(Unavailable):
            await x.client(base_url=dead).me()
        with pytest.raises(Unavailable):
            await x.client(base_url=dead).post("hello", TweetId("1"))


async def test_wrong_credentials_pause_posting_and_are_never_a_refused_reply(x: X) -> None:
    """A 401 is about the bot's credentials, not the reply: posting pauses (every reply
    waits) rather than this reply being refused for good."""
    client = x.client(consumer_secret="wrong")
    with pytest.raises(Unavailable, match="401"):
        await client.me()
    question = x.state.tweet("asha", "@SevaHelp hi")
    with pytest.raises(CredentialsRefused, match="401"):
        await client.post("hello", TweetId(question["id"]))
    with pytest.raises(Unavailable, match="401"):
        await x.client(bearer_token="wrong").mentions(None)


# --- TweetSink ------------------------------------------------------------------------


async def test_post_replies_to_the_tweet(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp is the camp open?")
    tweet_id = await x.client().post("Yes, until 5 pm.", TweetId(question["id"]))
    stored = x.state.get(tweet_id)
    assert stored is not None
    assert (stored["text"], stored["author_id"]) == ("Yes, until 5 pm.", x.me)
    assert stored["in_reply_to_tweet_id"] == question["id"]
    assert x.calls("/2/tweets", "POST")[0].auth == "oauth1"


async def test_refusals_become_tweet_refused_with_x_reason(x: X) -> None:
    s = x.state
    client = x.client()
    question = s.tweet("asha", "@SevaHelp where?")
    gone = s.tweet("ravi", "@SevaHelp never mind")
    s.delete(gone["id"])
    unrelated = s.tweet("meena", "nice weather")
    await client.post("At the school.", TweetId(question["id"]))

    cases = [
        ("At the school.", question["id"], "duplicate content", 403),
        ("Sorry to hear.", gone["id"], "deleted or not visible", 403),
        ("Hello!", unrelated["id"], "where you are mentioned or are the author", 403),
        ("x" * 281, question["id"], "too long", 400),
    ]
    for text, target, reason, status in cases:
        with pytest.raises(TweetRefused) as e:
            await client.post(text, TweetId(target))
        assert reason in e.value.reason
        assert e.value.status == status
        assert "\n" not in e.value.reason and not e.value.reason.startswith(str(status))
    ours = [t for t in s.snapshot()["tweets"] if t["author_id"] == x.me]
    assert len(ours) == 1


async def test_delete_removes_our_post_and_a_post_already_gone_counts(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp is the camp open?")
    client = x.client()
    ours = await client.post("Yes, until 5 pm.", TweetId(question["id"]))
    await client.delete(ours)
    gone = x.state.get(ours)
    assert gone is not None and gone["deleted"] is True
    await client.delete(ours)  # X answers 404 now: already deleted is deleted
    statuses = [r.status for r in x.calls(f"/2/tweets/{ours}", "DELETE")]
    assert statuses == [200, 404]
    assert {r.auth for r in x.calls(f"/2/tweets/{ours}", "DELETE")} == {"oauth1"}
    with pytest.raises(TweetRefused) as refused:  # not ours to delete
        await client.delete(TweetId(question["id"]))
    assert refused.value.status == 403
    assert x.state.get(question["id"])["deleted"] is False  # type: ignore[index]
    x.state.set_limit("delete_tweet", 0)
    with pytest.raises(RateLimited):
        await client.delete(ours)


async def test_post_429_raises_rate_limited(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp hi")
    client = x.client()
    x.state.set_limit("create_tweet", 0)
    with pytest.raises(RateLimited) as e:
        await client.post("hello", TweetId(question["id"]))
    assert e.value.until == _reset_of(x, "create_tweet")
    assert len(x.calls("/2/tweets", "POST")) == 1
    assert x.state.get(question["id"]) is not None
    assert [t for t in x.state.snapshot()["tweets"] if t["author_id"] == x.me] == []


async def test_429_without_usable_headers_waits_conservatively() -> None:
    """A 429 that names no reset (or the posting cap's own reset) still never busy-loops."""
    clock = FakeClock()
    answers: list[dict[str, str]] = [
        {},
        {"x-rate-limit-reset": "1"},  # already past: clock skew
        {
            "x-rate-limit-remaining": "99",
            "x-rate-limit-reset": str(int(clock()) + 60),
            "x-user-limit-24hour-remaining": "0",
            "x-user-limit-24hour-reset": str(int(clock()) + 7200),
        },
    ]

    async def too_many(request: web.Request) -> web.Response:
        return web.json_response(
            {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank"},
            status=429,
            headers=answers.pop(0),
            content_type="application/problem+json",
        )

    app = web.Application()
    app.router.add_post("/2/tweets", too_many)
    runner, origin = await _serve(app)
    try:
        client = XClient(
            consumer_key="k",
            consumer_secret="s",
            access_token="t",
            access_token_secret="ts",
            base_url=origin,
            clock=clock,
        )
        waits = []
        for _ in range(3):
            with pytest.raises(RateLimited) as e:
                await client.post("hello", TweetId("1"))
            waits.append(e.value.until - clock.now())
    finally:
        await runner.cleanup()
    assert waits[0] == timedelta(minutes=15)
    assert timedelta(seconds=30) <= waits[1] <= timedelta(minutes=15)
    assert waits[2] > timedelta(minutes=100)  # the 24-hour cap's reset, not the window's


async def test_a_tweet_whose_answer_was_lost_is_found_again(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp is the camp open?")
    other = x.state.tweet("ravi", "@SevaHelp and tomorrow?")
    client = x.client()
    x.state.add_fault("POST", "/2/tweets", 503, after_commit=True)

    with pytest.raises(Unavailable):
        await client.post("Yes, until 5 pm & after.", TweetId(question["id"]))

    found = await client.find_own_reply(TweetId(question["id"]), "Yes, until 5 pm & after.")
    ours = [t for t in x.state.snapshot()["tweets"] if t["author_id"] == x.me]
    assert [found] == [t["id"] for t in ours]
    assert await client.find_own_reply(TweetId(question["id"]), "Something else") is None
    assert await client.find_own_reply(TweetId(other["id"]), "Yes, until 5 pm & after.") is None


async def test_find_own_reply_pages_back_a_little(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp hello")
    reply = x.state.tweet("SevaHelp", "Hello!", in_reply_to_tweet_id=question["id"])
    for i in range(150):  # a busy desk tweets on after the reply
        x.state.tweet("SevaHelp", f"Update number {i}")

    assert await x.client().find_own_reply(TweetId(question["id"]), "Hello!") == reply["id"]
    assert (
        await x.client(own_reply_pages=1).find_own_reply(TweetId(question["id"]), "Hello!") is None
    )


async def test_a_split_reply_goes_out_as_a_chain(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp ऑक्सीजन कहाँ मिलेगा?")
    text = (
        "ऑक्सीजन सिलेंडर जिला अस्पताल के वार्ड 4 में उपलब्ध हैं 🙏 "
        "details: https://health.example.gov.in/oxygen/availability?district=north "
    ) * 6
    parts = split_reply(text)
    assert len(parts) > 1
    client = x.client()
    previous = TweetId(question["id"])
    for part in parts:
        previous = await client.post(part, previous)  # the stand-in refuses anything invalid
    chain = [t for t in x.state.snapshot()["tweets"] if t["author_id"] == x.me]
    assert [t["text"] for t in chain] == parts
    assert chain[0]["in_reply_to_tweet_id"] == question["id"]
    assert [t["in_reply_to_tweet_id"] for t in chain[1:]] == [t["id"] for t in chain[:-1]]


# --- The renamed field parameters (post.fields, referenced_posts, note_post)


@pytest.mark.parametrize("names", ["old", "new", "both"])
async def test_either_spelling_reads_mentions_and_finds_a_lost_reply(
    x: X, names: str, stores: Callable[[], Store]
) -> None:
    x.state.set_field_names(names)
    kv = stores()
    client = x.client(kv=kv)
    long_text = "@SevaHelp " + "my refund is late. " * 20 + "#railways"
    question = x.state.tweet("asha", long_text)
    own = x.state.tweet("SevaHelp", "Camp today", in_reply_to_tweet_id=question["id"])
    follow_up = x.state.tweet("asha", "@SevaHelp which camp?", in_reply_to_tweet_id=own["id"])

    by_id = {t.id: t for t in await client.mentions(None)}
    assert by_id[question["id"]].text == long_text  # note_tweet / note_post
    assert by_id[question["id"]].hashtags == ("railways",)
    assert by_id[follow_up["id"]].replied_to == own["id"]  # referenced_tweets / _posts
    assert await client.find_own_reply(TweetId(question["id"]), "Camp today") == own["id"]
    expected = "post.fields" if names == "new" else "tweet.fields"
    assert (await client.dialect()).value == expected
    assert await kv.get("x.field_dialect") == (expected if names == "new" else None)
    refused = [r for r in x.calls("/mentions") if r.status == 400]
    assert len(refused) == (1 if names == "new" else 0)  # one 400, then remembered


async def test_the_remembered_spelling_is_used_from_the_start(
    x: X, stores: Callable[[], Store]
) -> None:
    x.state.set_field_names("new")
    kv = stores()
    await kv.put("x.field_dialect", "post.fields")
    x.state.tweet("asha", "@SevaHelp hello")
    assert len(await x.client(kv=kv).mentions(None)) == 1
    assert [r.status for r in x.calls("/mentions")] == [200]


async def test_another_bad_parameter_is_no_spelling_problem(x: X) -> None:
    x.state.set_field_names("new")
    client = x.client()
    with pytest.raises(Unavailable, match="users/tweets"):
        # exclude=replies,retweets is fine; a bad value of another parameter is not a
        # spelling problem and must not flip the dialect.
        await client._read_posts(
            "users/tweets",
            f"/2/users/{x.me}/tweets",
            {"max_results": "1000"},
            lambda d: {d.value: "created_at"},
            user_auth=False,
        )
    assert (await client.dialect()).value == "post.fields"


# --- Media upload (POST /2/media/upload) and a post carrying it

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a49444154789c636800000082008177cd72b60000000049454e44ae426082"
)


async def test_an_uploaded_image_is_attached_to_the_reply(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp where is the camp?")
    client = x.client()
    media_id = await client.upload_media(PNG, "image/png")
    assert [(r.auth, r.status) for r in x.calls("/2/media/upload", "POST")] == [("oauth1", 200)]
    tweet_id = await client.post("", TweetId(question["id"]), [media_id])
    posted = x.state.get(tweet_id)
    assert posted is not None and posted["media_keys"] == [f"3_{media_id}"]
    # Found again after a crash although X put the image's t.co link in the text.
    assert await client.find_own_reply(TweetId(question["id"]), "") == tweet_id
    with pytest.raises(TweetRefused, match="media IDs are invalid"):
        await client.post("again", TweetId(question["id"]), [media_id])  # used already
    with pytest.raises(TweetRefused, match="Unsupported media type"):
        await client.upload_media(b"<!DOCTYPE html>", "image/png")
