"""The X stand-in answers like X: driven by the real tweepy client (and raw HTTP for the
exact wire format) over a real socket, with an injected clock instead of sleeps."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import requests
import tweepy
from aiohttp import web
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth1

from sandbox.x.routes import build_x_app
from sandbox.x.state import XState

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
DELETED = "You attempted to reply to a Tweet that is deleted or not visible to you."
NOT_ALLOWED = "You can only reply to or quote posts where you are mentioned or are the author."


class FakeClock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class _ToStandIn(HTTPAdapter):
    """What tweepy sends to api.twitter.com goes to the stand-in instead."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        request.url = request.url.replace("https://api.twitter.com", self.base, 1)
        kwargs["proxies"] = {}
        return super().send(request, *args, **kwargs)


@dataclass
class X:
    state: XState
    clock: FakeClock
    origin: str  # http://127.0.0.1:PORT
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return self.origin + "/x"

    @property
    def me(self) -> str:
        return self.state.account.id

    def tweepy(self, return_type: Any = dict, **overrides: str) -> tweepy.Client:
        creds = {
            "bearer_token": self.state.bearer_token,
            "consumer_key": self.state.api_key,
            "consumer_secret": self.state.api_secret,
            "access_token": self.state.access_token,
            "access_token_secret": self.state.access_token_secret,
        }
        creds.update(overrides)
        client = tweepy.Client(**creds, return_type=return_type)
        client.session.mount("https://api.twitter.com", _ToStandIn(self.base))
        return client

    async def get(
        self, path: str, params: dict[str, str] | None = None, *, bearer: str | None = None
    ) -> tuple[int, dict[str, Any], Any]:
        headers = {"Authorization": f"Bearer {bearer or self.state.bearer_token}"}
        async with self.http.get("/x" + path, params=params, headers=headers) as r:
            return r.status, dict(r.headers), await r.json(content_type=None)

    async def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, "/x" + path, json=body) as r:
            return r.status, await r.json(content_type=None)

    async def signed(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A raw OAuth 1.0a request as requests_oauthlib signs it."""
        auth = kwargs.pop(
            "auth",
            OAuth1(
                self.state.api_key,
                self.state.api_secret,
                self.state.access_token,
                self.state.access_token_secret,
            ),
        )
        return await asyncio.to_thread(
            requests.request, method, url, auth=auth, timeout=10, **kwargs
        )


@pytest.fixture
async def x() -> AsyncIterator[X]:
    clock = FakeClock()
    state = XState(clock=clock)
    root = web.Application()
    root.add_subapp("/x", build_x_app(state))  # mounted the way the sandbox server does
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession(base_url=origin) as http:
        yield X(state, clock, origin, http)
    await runner.cleanup()


def _mentions(x: X, **params: str) -> dict[str, str]:
    return {"max_results": "100", **params}


# --- authentication -------------------------------------------------------------------


async def test_users_me_answers_user_context_and_refuses_the_bearer(x: X) -> None:
    me = await asyncio.to_thread(x.tweepy().get_me, user_auth=True)
    assert me["data"] == {"id": x.me, "name": "Seva Help Desk", "username": "SevaHelp"}

    status, headers, body = await x.get("/2/users/me")
    assert status == 403
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["title"] == "Unsupported Authentication"
    assert body["status"] == 403


async def test_missing_or_wrong_bearer_is_401_problem(x: X) -> None:
    async with x.http.get(f"/x/2/users/{x.me}/mentions") as r:
        assert r.status == 401
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert (await r.json(content_type=None))["title"] == "Unauthorized"
    status, _, body = await x.get(f"/2/users/{x.me}/mentions", bearer="not-the-token")
    assert (status, body["status"]) == (401, 401)


@pytest.mark.parametrize(
    "override",
    [
        {"consumer_secret": "wrong-secret"},
        {"access_token_secret": "wrong-secret"},
        {"consumer_key": "someone-else"},
        {"access_token": "someone-elses-token"},
    ],
)
async def test_oauth1_with_wrong_credentials_is_401(x: X, override: dict[str, str]) -> None:
    with pytest.raises(tweepy.Unauthorized):
        await asyncio.to_thread(x.tweepy(**override).get_me, user_auth=True)
    with pytest.raises(tweepy.Unauthorized):
        await asyncio.to_thread(x.tweepy(**override).create_tweet, text="hello")
    assert x.state.snapshot()["tweets"] == []


async def test_oauth1_signature_covers_the_query(x: X) -> None:
    url = f"{x.base}/2/users/{x.me}/mentions?max_results=10"
    ok = await x.signed("GET", url)
    assert ok.status_code == 200

    # Sign one query, send another: a replayed signature must not authorise it.
    signed = requests.Request(
        "GET",
        url,
        auth=OAuth1(
            x.state.api_key, x.state.api_secret, x.state.access_token, x.state.access_token_secret
        ),
    ).prepare()
    tampered = await asyncio.to_thread(
        requests.get,
        url.replace("max_results=10", "max_results=100"),
        headers={"Authorization": signed.headers["Authorization"]},
        timeout=10,
    )
    assert tampered.status_code == 401
    assert tampered.headers["Content-Type"].startswith("application/problem+json")


async def test_bearer_cannot_post(x: X) -> None:
    with pytest.raises(tweepy.Forbidden) as e:
        await asyncio.to_thread(x.tweepy().create_tweet, text="hello", user_auth=False)
    assert e.value.response.json()["title"] == "Unsupported Authentication"
    assert x.state.snapshot()["tweets"] == []


# --- what counts as a mention ---------------------------------------------------------


async def test_mentions_are_handles_and_replies_but_not_own_tweets(x: X) -> None:
    s = x.state
    own = s.tweet("SevaHelp", "We are open 9 to 5 @SevaHelp")  # own: never its own mention
    expected = [
        s.tweet("asha", "@SevaHelp no oxygen at the district hospital")["id"],
        s.tweet("ravi", "hey @sevahelp, any update?")["id"],
        s.tweet("meena", "thanks", in_reply_to_tweet_id=own["id"])["id"],  # replies to it
        s.tweet("ravi", "RT @SevaHelp: We are open")["id"],
    ]
    root = s.tweet("asha", "just chatting")
    s.tweet("ravi", "@asha agreed", in_reply_to_tweet_id=root["id"])  # not addressed to it
    s.tweet("asha", "@SevaHelpers is another account")
    s.tweet("asha", "write to help@SevaHelp.example")
    s.tweet("asha", "@SevaHelp_ is someone else too")

    status, _, body = await x.get(f"/2/users/{x.me}/mentions", _mentions(x))
    assert status == 200
    assert [t["id"] for t in body["data"]] == list(reversed(expected))
    assert [t["mentions_account"] for t in s.snapshot()["tweets"]] == [
        False,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
        False,
    ]


async def test_ids_are_increasing_snowflakes_and_conversations_follow_the_chain(x: X) -> None:
    s = x.state
    root = s.tweet("asha", "@SevaHelp first")
    x.clock.advance(1.5)
    reply = s.tweet("SevaHelp", "on it", in_reply_to_tweet_id=root["id"])
    again = s.tweet("asha", "still waiting", in_reply_to_tweet_id=reply["id"])
    ids = [int(t["id"]) for t in (root, reply, again)]
    assert ids == sorted(set(ids))
    assert all(i >= 1_860_000_000_000_000_000 and len(str(i)) == 19 for i in ids)
    assert {reply["conversation_id"], again["conversation_id"]} == {root["id"]}
    assert again["in_reply_to_user_id"] == x.me

    status, _, body = await x.get(
        f"/2/users/{x.me}/mentions",
        _mentions(
            x,
            **{
                "tweet.fields": "created_at,conversation_id,in_reply_to_user_id,referenced_tweets",
            },
        ),
    )
    newest = body["data"][0]
    assert newest["id"] == again["id"]
    assert newest["conversation_id"] == root["id"]
    assert newest["in_reply_to_user_id"] == x.me
    assert newest["referenced_tweets"] == [{"type": "replied_to", "id": reply["id"]}]
    assert ISO_MS.fullmatch(newest["created_at"])
    assert "in_reply_to_user_id" not in body["data"][1]  # the root replies to no one


# --- the mentions page ----------------------------------------------------------------


async def test_page_has_only_requested_fields_and_author_includes(x: X) -> None:
    x.state.tweet("asha", "@SevaHelp need help & <quickly>")
    status, _, plain = await x.get(f"/2/users/{x.me}/mentions")
    assert status == 200
    assert set(plain["data"][0]) == {"id", "text", "edit_history_tweet_ids"}
    assert "includes" not in plain
    assert plain["data"][0]["text"] == "@SevaHelp need help &amp; &lt;quickly&gt;"

    _, _, rich = await x.get(
        f"/2/users/{x.me}/mentions",
        {"expansions": "author_id", "tweet.fields": "created_at", "user.fields": "username"},
    )
    tweet = rich["data"][0]
    assert set(tweet) == {"id", "text", "edit_history_tweet_ids", "author_id", "created_at"}
    assert tweet["edit_history_tweet_ids"] == [tweet["id"]]
    assert rich["includes"]["users"] == [
        {"id": tweet["author_id"], "name": "asha", "username": "asha"}
    ]
    assert rich["meta"] == {"newest_id": tweet["id"], "oldest_id": tweet["id"], "result_count": 1}


async def test_empty_page_is_only_meta(x: X) -> None:
    status, _, body = await x.get(f"/2/users/{x.me}/mentions", _mentions(x))
    assert (status, body) == (200, {"meta": {"result_count": 0}})
    newest = x.state.tweet("asha", "@SevaHelp hi")["id"]
    _, _, body = await x.get(f"/2/users/{x.me}/mentions", _mentions(x, since_id=newest))
    assert body == {"meta": {"result_count": 0}}


@pytest.mark.parametrize(
    ("path", "value", "ok"),
    [
        ("mentions", "4", False),
        ("mentions", "101", False),
        ("mentions", "abc", False),
        ("mentions", "5", True),
        ("mentions", "100", True),
        ("tweets", "4", False),
        ("tweets", "5", True),
        ("search", "9", False),
        ("search", "10", True),
        ("search", "101", False),
    ],
)
async def test_max_results_ranges(x: X, path: str, value: str, ok: bool) -> None:
    url = {
        "mentions": f"/2/users/{x.me}/mentions",
        "tweets": f"/2/users/{x.me}/tweets",
        "search": "/2/tweets/search/recent",
    }[path]
    params = {"max_results": value}
    if path == "search":
        params["query"] = "help"
    status, headers, body = await x.get(url, params)
    if ok:
        assert status == 200
    else:
        assert status == 400
        assert headers["Content-Type"].startswith("application/problem+json")
        assert body["title"] == "Invalid Request"
        assert "max_results" in body["errors"][0]["message"]


async def test_paging_since_and_until(x: X) -> None:
    ids = [x.state.tweet(f"c{i % 3}", f"@SevaHelp query {i}")["id"] for i in range(25)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"max_results": "10", "since_id": ids[4]}
        if token:
            params["pagination_token"] = token
        status, _, body = await x.get(f"/2/users/{x.me}/mentions", params)
        assert status == 200
        pages += 1
        seen += [t["id"] for t in body["data"]]
        assert body["meta"]["newest_id"] == body["data"][0]["id"]
        assert body["meta"]["oldest_id"] == body["data"][-1]["id"]
        token = body["meta"].get("next_token")
        if not token:
            break
    assert seen == list(reversed(ids[5:]))  # since_id is exclusive
    assert pages == 2

    _, _, body = await x.get(
        f"/2/users/{x.me}/mentions", _mentions(x, since_id=ids[9], until_id=ids[12])
    )
    assert [t["id"] for t in body["data"]] == [ids[11], ids[10]]

    status, _, body = await x.get(
        f"/2/users/{x.me}/mentions", _mentions(x, pagination_token="nonsense")
    )
    assert status == 400


async def test_only_the_800_most_recent_mentions_are_reachable(x: X) -> None:
    ids = [x.state.tweet("asha", f"@SevaHelp number {i}")["id"] for i in range(850)]
    seen: list[str] = []
    token = None
    while True:
        params = _mentions(x, **({"pagination_token": token} if token else {}))
        _, _, body = await x.get(f"/2/users/{x.me}/mentions", params)
        seen += [t["id"] for t in body.get("data", [])]
        token = body["meta"].get("next_token")
        if not token:
            break
    assert seen == list(reversed(ids[50:]))


async def test_deleted_tweets_leave_the_timeline(x: X) -> None:
    a = x.state.tweet("asha", "@SevaHelp one")
    b = x.state.tweet("asha", "@SevaHelp two")
    status, _ = await x.control("POST", f"/sandbox/tweets/{b['id']}/delete")
    assert status == 200
    _, _, body = await x.get(f"/2/users/{x.me}/mentions", _mentions(x))
    assert [t["id"] for t in body["data"]] == [a["id"]]


async def test_unknown_user_is_404(x: X) -> None:
    status, headers, body = await x.get("/2/users/12345/mentions")
    assert status == 404
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["detail"] == "Could not find user with id: [12345]."


# --- search and own tweets ------------------------------------------------------------


async def test_recent_search_query_language(x: X) -> None:
    s = x.state
    t1 = s.tweet("asha", "No oxygen at the district hospital #covid19")["id"]
    t2 = s.tweet("ravi", "@SevaHelp vaccine slots for tomorrow?")["id"]
    t3 = s.tweet("meena", "hospital beds full")["id"]
    t4 = s.tweet("ravi", "", retweet_of_tweet_id=t1)["id"]
    t5 = s.tweet("asha", "@sevahelp ऑक्सीजन सिलेंडर चाहिए")["id"]

    async def search(query: str, **extra: str) -> list[str]:
        status, _, body = await x.get("/2/tweets/search/recent", {"query": query, **extra})
        assert status == 200, body
        return [t["id"] for t in body.get("data", [])]

    assert await search("oxygen hospital") == [t4, t1]
    assert await search("oxygen hospital -is:retweet") == [t1]
    assert await search("OXYGEN OR vaccine") == [t4, t2, t1]
    assert await search("#COVID19 -is:retweet") == [t1]
    assert await search("@SevaHelp") == [t5, t2]
    assert await search("@SevaHelp -is:retweet", since_id=t2) == [t5]
    assert await search("ऑक्सीजन") == [t5]
    assert await search('"district hospital" from:asha') == [t1]
    assert await search("(beds OR slots) -from:ravi") == [t3]

    status, _, body = await x.get("/2/tweets/search/recent", {"query": "nonsense:op"})
    assert status == 400
    assert "invalid operator" in body["errors"][0]["message"]

    x.clock.advance(8 * 24 * 3600)  # search reaches back 7 days only
    assert await search("hospital") == []


async def test_recent_search_pages_with_next_token(x: X) -> None:
    ids = [x.state.tweet("asha", f"help needed {i}")["id"] for i in range(25)]
    seen: list[str] = []
    token = None
    while True:
        params = {"query": "help", "max_results": "10"}
        if token:
            params["next_token"] = token
        _, _, body = await x.get("/2/tweets/search/recent", params)
        seen += [t["id"] for t in body["data"]]
        token = body["meta"].get("next_token")
        if not token:
            break
    assert seen == list(reversed(ids))


async def test_own_timeline_excludes_replies_and_retweets_on_request(x: X) -> None:
    s = x.state
    question = s.tweet("asha", "@SevaHelp where do I go?")
    post = s.tweet("SevaHelp", "Camp at the school today")
    reply = s.tweet("SevaHelp", "Go to ward 4", in_reply_to_tweet_id=question["id"])
    rt = s.tweet("SevaHelp", "", retweet_of_tweet_id=question["id"])
    assert rt["text"] == "RT @asha: @SevaHelp where do I go?"

    _, _, everything = await x.get(f"/2/users/{x.me}/tweets", {"tweet.fields": "referenced_tweets"})
    assert [t["id"] for t in everything["data"]] == [rt["id"], reply["id"], post["id"]]
    assert everything["data"][1]["referenced_tweets"] == [
        {"type": "replied_to", "id": question["id"]}
    ]
    _, _, originals = await x.get(f"/2/users/{x.me}/tweets", {"exclude": "retweets,replies"})
    assert [t["id"] for t in originals["data"]] == [post["id"]]
    _, _, since = await x.get(f"/2/users/{x.me}/tweets", {"since_id": reply["id"]})
    assert [t["id"] for t in since["data"]] == [rt["id"]]


# --- posting --------------------------------------------------------------------------


async def test_post_reply_answers_201_with_id_and_text(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp is the camp open?")
    client = x.tweepy(return_type=requests.Response)
    response = await asyncio.to_thread(
        client.create_tweet, text="Yes, until 5 pm.", in_reply_to_tweet_id=question["id"]
    )
    assert response.status_code == 201
    data = response.json()["data"]
    assert set(data) == {"id", "text", "edit_history_tweet_ids"}
    assert data["text"] == "Yes, until 5 pm."
    stored = x.state.get(data["id"])
    assert stored is not None
    assert stored["author_id"] == x.me
    assert stored["in_reply_to_tweet_id"] == question["id"]
    assert stored["conversation_id"] == question["id"]
    # The citizen is mentioned by the reply (a reply to them), so it is theirs to see.
    assert (await x.get(f"/2/users/{question['author_id']}/mentions"))[2]["data"][0]["id"] == (
        data["id"]
    )


async def test_post_refusals_match_x(x: X) -> None:
    s = x.state
    client = x.tweepy()
    question = s.tweet("asha", "@SevaHelp where is the camp?")
    gone = s.tweet("ravi", "@SevaHelp never mind")
    s.delete(gone["id"])
    unrelated = s.tweet("meena", "lovely weather")

    async def refused(status: type[Exception], **kwargs: Any) -> dict[str, Any]:
        with pytest.raises(status) as e:
            await asyncio.to_thread(client.create_tweet, **kwargs)
        response = e.value.response  # type: ignore[attr-defined]
        assert response.headers["Content-Type"].startswith("application/problem+json")
        return response.json()

    await asyncio.to_thread(
        client.create_tweet, text="At the school.", in_reply_to_tweet_id=question["id"]
    )
    body = await refused(
        tweepy.Forbidden, text="At the school.", in_reply_to_tweet_id=question["id"]
    )
    assert (body["detail"], body["status"]) == (DUPLICATE, 403)
    body = await refused(tweepy.Forbidden, text="Sorry!", in_reply_to_tweet_id=gone["id"])
    assert body["detail"] == DELETED
    body = await refused(tweepy.Forbidden, text="Hello", in_reply_to_tweet_id=unrelated["id"])
    assert body["detail"] == NOT_ALLOWED
    body = await refused(tweepy.Forbidden, text="Hi", in_reply_to_tweet_id="1234567")
    assert body["detail"] == DELETED
    body = await refused(tweepy.BadRequest, text="x" * 281, in_reply_to_tweet_id=question["id"])
    assert "too long" in body["errors"][0]["message"]
    await refused(tweepy.BadRequest, text="", in_reply_to_tweet_id=question["id"])
    # 280 weighted: 140 CJK characters weigh 2 each; one more is too many.
    await asyncio.to_thread(client.create_tweet, text="字" * 140)
    await refused(tweepy.BadRequest, text="字" * 141)
    # A URL weighs 23 however long it is.
    await asyncio.to_thread(
        client.create_tweet, text="y" * 250 + " https://example.com/" + "z" * 80
    )

    x.clock.advance(24 * 3600 + 1)  # duplicates are only refused within 24 hours
    await asyncio.to_thread(
        client.create_tweet, text="At the school.", in_reply_to_tweet_id=question["id"]
    )


async def test_may_reply_to_replies_to_its_own_tweets_and_to_quotes_of_them(x: X) -> None:
    s = x.state
    client = x.tweepy()
    own = s.tweet("SevaHelp", "Camps open today")
    follow_up = s.tweet("asha", "which ones?", in_reply_to_tweet_id=own["id"])
    quote = s.tweet("ravi", "good news", quote_tweet_id=own["id"])
    for target in (own, follow_up, quote):
        r = await asyncio.to_thread(
            client.create_tweet,
            text=f"See the list {target['id']}",
            in_reply_to_tweet_id=target["id"],
        )
        assert r["data"]["id"]


# --- rate limits and faults -----------------------------------------------------------


async def test_rate_limit_headers_and_429(x: X) -> None:
    x.state.set_limit("mentions", 3)
    start = x.clock()
    reset = str(int(start + 900) + (0 if (start + 900).is_integer() else 1))
    remaining = []
    for _ in range(3):
        status, headers, _ = await x.get(f"/2/users/{x.me}/mentions")
        assert status == 200
        assert headers["x-rate-limit-limit"] == "3"
        assert headers["x-rate-limit-reset"] == reset
        remaining.append(headers["x-rate-limit-remaining"])
        x.clock.advance(10)
    assert remaining == ["2", "1", "0"]

    status, headers, body = await x.get(f"/2/users/{x.me}/mentions")
    assert status == 429
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["title"] == "Too Many Requests"
    assert (headers["x-rate-limit-remaining"], headers["x-rate-limit-reset"]) == ("0", reset)
    # Other endpoints have their own windows.
    assert (await x.get(f"/2/users/{x.me}/tweets"))[0] == 200

    x.clock.t = start + 900
    status, headers, _ = await x.get(f"/2/users/{x.me}/mentions")
    assert status == 200
    assert headers["x-rate-limit-remaining"] == "2"


async def test_tweepy_sees_429_with_the_reset_time(x: X) -> None:
    x.state.set_limit("create_tweet", 0)
    with pytest.raises(tweepy.TooManyRequests) as e:
        await asyncio.to_thread(x.tweepy().create_tweet, text="hi")
    assert e.value.reset_time == x.state.limit_status()["create_tweet"]["reset"]
    assert x.state.snapshot()["tweets"] == []


async def test_faults_fail_the_next_requests_then_clear(x: X) -> None:
    status, body = await x.control(
        "POST",
        "/sandbox/faults",
        {"method": "GET", "path_prefix": "/2/users/", "status": 503, "times": 2},
    )
    assert status == 201
    statuses = [(await x.get(f"/2/users/{x.me}/mentions"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_after_commit_fault_creates_the_tweet_but_fails_the_call(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp hello?")
    x.state.add_fault("POST", "/2/tweets", 503, after_commit=True)
    with pytest.raises(tweepy.TwitterServerError):
        await asyncio.to_thread(
            x.tweepy().create_tweet, text="Hello!", in_reply_to_tweet_id=question["id"]
        )
    ours = [t for t in x.state.snapshot()["tweets"] if t["author_id"] == x.me]
    assert [(t["text"], t["in_reply_to_tweet_id"]) for t in ours] == [("Hello!", question["id"])]
    assert x.state.requests[-1].status == 503


# --- control API ----------------------------------------------------------------------


async def test_control_api(x: X) -> None:
    status, created = await x.control(
        "POST", "/sandbox/tweets", {"username": "asha", "text": "@SevaHelp help"}
    )
    assert status == 201
    tweet = created["data"]
    status, reply = await x.control(
        "POST",
        "/sandbox/tweets",
        {"username": "ravi", "text": "me too", "in_reply_to_tweet_id": tweet["id"]},
    )
    assert status == 201
    assert reply["data"]["in_reply_to_tweet_id"] == tweet["id"]

    status, state = await x.control("GET", "/sandbox/state")
    assert status == 200
    assert state["account"] == {"id": x.me, "username": "SevaHelp"}
    assert {u["username"] for u in state["users"]} == {"SevaHelp", "asha", "ravi"}
    assert [t["id"] for t in state["tweets"]] == [tweet["id"], reply["data"]["id"]]
    first = state["tweets"][0]
    assert {k: first[k] for k in ("text", "username", "deleted", "in_reply_to_tweet_id")} == {
        "text": "@SevaHelp help",
        "username": "asha",
        "deleted": False,
        "in_reply_to_tweet_id": None,
    }
    assert ISO_MS.fullmatch(first["created_at"])

    assert (await x.control("POST", f"/sandbox/tweets/{tweet['id']}/delete"))[0] == 200
    assert (await x.control("GET", "/sandbox/state"))[1]["tweets"][0]["deleted"] is True
    assert (await x.control("POST", "/sandbox/tweets/999/delete"))[0] == 404
    status, error = await x.control("POST", "/sandbox/tweets", {"username": "asha", "text": ""})
    assert status == 400 and error["error"]

    status, limits = await x.control("POST", "/sandbox/limits", {"mentions": {"limit": 1}})
    assert status == 200 and limits["data"]["mentions"]["limit"] == 1
    assert (await x.get(f"/2/users/{x.me}/mentions"))[0] == 200
    assert (await x.get(f"/2/users/{x.me}/mentions"))[0] == 429
    assert (await x.control("POST", "/sandbox/limits", {"nope": {"limit": 1}}))[0] == 400
    assert (await x.control("POST", "/sandbox/faults", {"status": 200}))[0] == 400


# --- speed ----------------------------------------------------------------------------


async def test_a_page_of_100_mentions_is_served_fast_from_a_large_store(x: X) -> None:
    s = x.state
    for i in range(20_000):
        s.tweet(f"c{i % 50}", f"@SevaHelp query number {i}" if i % 2 else f"chatter {i}")
    ids = [t["id"] for t in s.snapshot()["tweets"] if t["mentions_account"]]
    params = {
        "max_results": "100",
        "expansions": "author_id",
        "tweet.fields": "created_at,conversation_id,in_reply_to_user_id,referenced_tweets",
        "user.fields": "username",
    }
    timings = []
    for k in range(20):
        page = dict(params)
        if k % 2:
            page["until_id"] = ids[-300 - k]  # a later page, not only the newest
        started = time.perf_counter()
        status, _, body = await x.get(f"/2/users/{x.me}/mentions", page)
        timings.append(time.perf_counter() - started)
        assert status == 200 and body["meta"]["result_count"] == 100, (k, body["meta"])
    assert statistics.median(timings) < 0.010, timings


# --- what X really sends: long posts, media, edits, the renamed fields --------------


async def test_a_long_post_is_cut_and_whole_only_in_note_tweet(x: X) -> None:
    from twitter_text import parse_tweet

    text = "@SevaHelp " + "मेरी ट्रेन रद्द हो गई, रिफंड कब मिलेगा? " * 12 + "#भारतीयरेल"
    x.state.tweet("asha", text)
    path = f"/2/users/{x.me}/mentions"
    _, _, plain = await x.get(path, {"tweet.fields": "entities"})
    (item,) = plain["data"]
    assert "note_tweet" not in item  # only when asked for
    assert text.startswith(item["text"]) and parse_tweet(item["text"]).weightedLength <= 280
    assert not item["text"].endswith(("…", "..."))
    _, _, full = await x.get(path, {"tweet.fields": "note_tweet"})
    note = full["data"][0]["note_tweet"]
    assert note["text"] == text
    (tag,) = note["entities"]["hashtags"]
    assert (tag["tag"], text[tag["start"] : tag["end"]]) == ("भारतीयरेल", "#भारतीयरेल")


async def test_media_come_as_includes_with_a_t_co_link(x: X) -> None:
    x.state.tweet(
        "asha",
        "@SevaHelp my ticket",
        media=[{"type": "photo", "alt_text": "PNR"}, {"type": "photo"}],
    )
    x.state.tweet("ravi", "@SevaHelp the queue", media=[{"type": "video"}])
    _, _, body = await x.get(
        f"/2/users/{x.me}/mentions",
        {
            "tweet.fields": "attachments,entities",
            "expansions": "attachments.media_keys",
            "media.fields": "url,preview_image_url,variants,alt_text,duration_ms",
        },
    )
    video_post, photo_post = body["data"]
    keys = photo_post["attachments"]["media_keys"]
    assert all(k.startswith("3_") for k in keys)
    link = photo_post["entities"]["urls"][-1]
    assert link["media_key"] == keys[0] and photo_post["text"].endswith(link["url"])
    media = {m["media_key"]: m for m in body["includes"]["media"]}
    assert media[keys[0]]["alt_text"] == "PNR" and "url" in media[keys[0]]
    video = media[video_post["attachments"]["media_keys"][0]]
    assert video["type"] == "video" and "url" not in video  # X gives videos no url
    assert video["duration_ms"] > 0 and video["preview_image_url"]
    assert any(v.get("content_type") == "video/mp4" for v in video["variants"])
    async with x.http.get(media[keys[0]]["url"].removeprefix(x.origin)) as r:
        assert r.status == 200 and r.content_type == "image/png"


async def test_an_edit_is_a_new_post_and_the_timeline_shows_only_it(x: X) -> None:
    first = x.state.tweet("asha", "@SevaHelp is the hospitl open?")
    status, edited = await x.control(
        "POST", f"/sandbox/tweets/{first['id']}/edit", {"text": "@SevaHelp is the hospital open?"}
    )
    assert status == 201 and int(edited["data"]["id"]) > int(first["id"])
    _, _, body = await x.get(
        f"/2/users/{x.me}/mentions",
        {"tweet.fields": "conversation_id", "expansions": "edit_history_tweet_ids"},
    )
    (item,) = body["data"]
    assert item["id"] == edited["data"]["id"]
    assert item["edit_history_tweet_ids"] == [first["id"], item["id"]]  # oldest first
    assert item["conversation_id"] == item["id"]  # an edited root: its own conversation
    assert [t["id"] for t in body["includes"]["tweets"]] == [first["id"]]
    status, _ = await x.control(
        "POST", f"/sandbox/tweets/{first['id']}/edit", {"text": "@SevaHelp again"}
    )
    assert status == 409  # only the newest version can be edited
    x.clock.advance(31 * 60)
    status, _ = await x.control(
        "POST", f"/sandbox/tweets/{item['id']}/edit", {"text": "@SevaHelp too late"}
    )
    assert status == 403  # 30 minutes


async def test_the_renamed_field_parameters_are_one_option(x: X) -> None:
    question = x.state.tweet("asha", "@SevaHelp hello")
    x.state.tweet("ravi", "@SevaHelp same", quote_tweet_id=question["id"])
    path = f"/2/users/{x.me}/mentions"
    new = {"post.fields": "conversation_id", "expansions": "referenced_posts,author_id"}
    status, _, body = await x.get(path, new)
    assert status == 400  # the default takes X's documented names only
    (error,) = body["errors"]
    assert error["parameters"] == {"post.fields": ["conversation_id"]}
    assert error["message"].startswith("The query parameter [post.fields] is not one of [")
    assert body["type"] == "https://api.twitter.com/2/problems/invalid-request"

    x.state.set_field_names("new")
    status, _, body = await x.get(path, new)
    assert status == 200
    quote = body["data"][0]
    assert quote["referenced_posts"] == [{"type": "quoted", "id": question["id"]}]
    assert "edit_history_post_ids" in quote and "edit_history_tweet_ids" not in quote
    assert [p["id"] for p in body["includes"]["posts"]] == [question["id"]]
    status, _, _ = await x.get(path, {"tweet.fields": "conversation_id"})
    assert status == 400
    x.state.set_field_names("both")
    assert (await x.get(path, {"tweet.fields": "conversation_id"}))[0] == 200
