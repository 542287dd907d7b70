"""The Slack stand-in, driven by the real slack_sdk client and received by a real slack-bolt app."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack.model import Delivery, sign
from sandbox.slack.routes import build_slack_app
from sandbox.slack.state import SlackState

TOKEN = "xoxb-1-sandbox-test-token"
APP_TOKEN = "xapp-1-A0SEVA-1-sandbox-app-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
HEALTH, WATER = "C0HEALTH", "C0WATER"
AGENT, CITIZEN_DESK = "U0AGENT1", "U0AGENT2"
TICKET_META = {"event_type": "seva_ticket", "event_payload": {"ticket": 42, "tweet_id": "1860"}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_732_900_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_for(predicate: Callable[[], Any], within: float = 5.0) -> None:
    """Poll a condition until it holds, failing at the deadline."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@dataclass
class Seen:
    messages: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Stack:
    state: SlackState
    clock: FakeClock
    base: str  # the stand-in subapp root, ".../slack"
    events_url: str  # the bolt app's POST /slack/events
    client: AsyncWebClient
    http: aiohttp.ClientSession
    bolt: AsyncApp
    seen: Seen

    async def control(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.base}/sandbox/{path}", json=body) as resp:
            return resp.status, await resp.json()

    async def snapshot(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/sandbox/state") as resp:
            assert resp.status == 200
            return await resp.json()

    def messages(self, snapshot: dict[str, Any], channel: str) -> list[dict[str, Any]]:
        return next(c["messages"] for c in snapshot["channels"] if c["id"] == channel)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    clock = FakeClock()
    state = SlackState(
        TOKEN,
        SECRET,
        None,
        channels=[(HEALTH, "health"), (WATER, "water")],
        users=[(AGENT, "asha", "Asha Rao"), (CITIZEN_DESK, "ravi", "Ravi Kumar")],
        clock=clock,
        retry_delays=(0.0, 0.0, 0.0),
        app_token=APP_TOKEN,
        usergroups=[("S0ONCALL", "health-oncall")],
    )
    state.rate_limit_per_channel = 0  # tests that need pacing switch it on
    root = web.Application()
    root.add_subapp("/slack", build_slack_app(state))
    standin_runner, standin_port = await serve(root)
    base = f"http://127.0.0.1:{standin_port}/slack"

    client = AsyncWebClient(token=TOKEN, base_url=f"{base}/api/")
    bolt = AsyncApp(signing_secret=SECRET, client=client)
    seen = Seen()

    @bolt.event("message")
    async def on_message(body: dict[str, Any], request: Any) -> None:
        seen.messages.append(body)
        seen.headers.append(dict(request.headers))

    @bolt.command("/ticket")
    async def on_ticket(ack: Any, command: dict[str, Any], respond: Any) -> None:
        seen.commands.append(command)
        if command["text"] == "later":
            await ack()
            await respond("worked on it later")
        elif command["text"] == "announce":
            await ack(response_type="in_channel", text="Ticket #7 is closed")
        else:
            await ack(f"Ticket #42 for <@{command['user_id']}>: {command['text']}")

    @bolt.action("send_reply")
    async def on_send(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        seen.actions.append(body)
        await respond(replace_original=True, text="Sent as tweet 1861")

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    bot_app = web.Application()
    bot_app.router.add_post("/slack/events", events)
    bot_runner, bot_port = await serve(bot_app)
    events_url = f"http://127.0.0.1:{bot_port}/slack/events"
    state.events_url = events_url

    async with aiohttp.ClientSession() as http:
        yield Stack(state, clock, base, events_url, client, http, bolt, seen)
    await bot_runner.cleanup()
    await standin_runner.cleanup()


@dataclass
class Recorder:
    """A raw events receiver, to see exactly what goes over the wire."""

    url: str
    requests: list[tuple[dict[str, str], bytes]]
    answer: Callable[[int], Awaitable[int]]  # attempt number -> HTTP status


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    requests: list[tuple[dict[str, str], bytes]] = []

    async def ok(_: int) -> int:
        return 200

    rec = Recorder("", requests, ok)

    async def receive(request: web.Request) -> web.Response:
        requests.append((dict(request.headers), await request.read()))
        return web.Response(status=await rec.answer(len(requests)))

    app = web.Application()
    app.router.add_post("/slack/events", receive)
    runner, port = await serve(app)
    rec.url = f"http://127.0.0.1:{port}/slack/events"
    yield rec
    await runner.cleanup()


# ---------------------------------------------------------------- Web API through slack_sdk


async def test_root_with_metadata_and_thread_reply_read_back(stack: Stack) -> None:
    root = await stack.client.chat_postMessage(
        channel=HEALTH, text="#42 @citizen: no oxygen", metadata=TICKET_META, unfurl_links=False
    )
    assert root["channel"] == HEALTH
    assert root["message"]["bot_id"] == "BSEVA"
    assert root["message"]["user"] == "UBOTSEVA"
    assert root["message"]["app_id"]
    reply = await stack.client.chat_postMessage(channel=HEALTH, text="On it", thread_ts=root["ts"])
    assert float(reply["ts"]) > float(root["ts"])

    plain = await stack.client.conversations_history(channel=HEALTH)
    assert [m["ts"] for m in plain["messages"]] == [root["ts"]]  # top-level only
    assert "metadata" not in plain["messages"][0]
    assert plain["messages"][0]["reply_count"] == 1

    rich = await stack.client.conversations_history(channel=HEALTH, include_all_metadata=True)
    assert rich["messages"][0]["metadata"] == TICKET_META

    thread = await stack.client.conversations_replies(
        channel=HEALTH, ts=root["ts"], include_all_metadata=True
    )
    assert [m["text"] for m in thread["messages"]] == ["#42 @citizen: no oxygen", "On it"]
    assert thread["messages"][0]["metadata"] == TICKET_META
    assert thread["messages"][1]["thread_ts"] == root["ts"]
    assert thread["messages"][1]["parent_user_id"] == "UBOTSEVA"
    bare = await stack.client.conversations_replies(channel=HEALTH, ts=root["ts"])
    assert all("metadata" not in m for m in bare["messages"])

    snap = await stack.snapshot()
    shown = stack.messages(snap, HEALTH)
    assert [(m["text"], m["thread_ts"], m["reply_count"]) for m in shown] == [
        ("#42 @citizen: no oxygen", None, 1),
        ("On it", root["ts"], 0),
    ]
    assert shown[0]["metadata"] == TICKET_META


async def test_history_pages_newest_first(stack: Stack) -> None:
    posted = [
        (await stack.client.chat_postMessage(channel=WATER, text=f"ticket {n}"))["ts"]
        for n in range(5)
    ]
    assert posted == sorted(posted, key=float) and len(set(posted)) == 5

    seen: list[str] = []
    cursor = None
    while True:
        page = await stack.client.conversations_history(channel=WATER, limit=2, cursor=cursor)
        assert len(page["messages"]) <= 2
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert seen == posted[::-1]

    window = await stack.client.conversations_history(
        channel=WATER, oldest=posted[1], latest=posted[3]
    )
    assert [m["ts"] for m in window["messages"]] == [posted[2]]
    inclusive = await stack.client.conversations_history(
        channel=WATER, oldest=posted[1], latest=posted[3], inclusive=True
    )
    assert [m["ts"] for m in inclusive["messages"]] == [posted[3], posted[2], posted[1]]


async def test_replies_paginate_oldest_first(stack: Stack) -> None:
    root = await stack.client.chat_postMessage(channel=HEALTH, text="root")
    replies = [
        (await stack.client.chat_postMessage(channel=HEALTH, text=f"r{n}", thread_ts=root["ts"]))[
            "ts"
        ]
        for n in range(4)
    ]
    texts: list[str] = []
    cursor = None
    while True:
        page = await stack.client.conversations_replies(
            channel=HEALTH, ts=root["ts"], limit=2, cursor=cursor
        )
        texts += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert texts == ["root", "r0", "r1", "r2", "r3"]
    by_reply = await stack.client.conversations_replies(channel=HEALTH, ts=replies[2])
    assert by_reply["messages"][0]["ts"] == root["ts"]
    with pytest.raises(SlackApiError) as missing:
        await stack.client.conversations_replies(channel=HEALTH, ts="1.000001")
    assert missing.value.response["error"] == "thread_not_found"


async def test_reactions_and_update(stack: Stack) -> None:
    msg = await stack.client.chat_postMessage(channel=HEALTH, text="ticket #42 open")
    await stack.client.reactions_add(channel=HEALTH, timestamp=msg["ts"], name="eyes")
    with pytest.raises(SlackApiError) as again:
        await stack.client.reactions_add(channel=HEALTH, timestamp=msg["ts"], name="eyes")
    assert again.value.response["error"] == "already_reacted"
    await stack.client.reactions_add(channel=HEALTH, timestamp=msg["ts"], name="white_check_mark")
    await stack.client.reactions_remove(channel=HEALTH, timestamp=msg["ts"], name="eyes")
    with pytest.raises(SlackApiError) as gone:
        await stack.client.reactions_remove(channel=HEALTH, timestamp=msg["ts"], name="eyes")
    assert gone.value.response["error"] == "no_reaction"

    updated = await stack.client.chat_update(channel=HEALTH, ts=msg["ts"], text="ticket #42 closed")
    assert updated["ts"] == msg["ts"]
    history = await stack.client.conversations_history(channel=HEALTH)
    shown = history["messages"][0]
    assert shown["text"] == "ticket #42 closed"
    assert shown["reactions"] == [{"name": "white_check_mark", "users": ["UBOTSEVA"], "count": 1}]
    assert shown["edited"]["user"] == "UBOTSEVA"

    human = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "hi"})
    with pytest.raises(SlackApiError) as foreign:
        await stack.client.chat_update(channel=HEALTH, ts=human[1]["ts"], text="forged")
    assert foreign.value.response["error"] == "cant_update_message"


async def test_get_permalink_as_slack_shapes_it(stack: Stack) -> None:
    root = await stack.client.chat_postMessage(channel=HEALTH, text="ticket #42")
    reply = await stack.client.chat_postMessage(channel=HEALTH, text="r", thread_ts=root["ts"])
    team = (await stack.client.auth_test())["url"]
    link = await stack.client.chat_getPermalink(channel=HEALTH, message_ts=root["ts"])
    assert link["channel"] == HEALTH
    assert link["permalink"] == f"{team}archives/{HEALTH}/p{root['ts'].replace('.', '')}"
    in_thread = await stack.client.chat_getPermalink(channel=HEALTH, message_ts=reply["ts"])
    assert in_thread["permalink"].endswith(
        f"/p{reply['ts'].replace('.', '')}?thread_ts={root['ts']}&cid={HEALTH}"
    )
    with pytest.raises(SlackApiError) as missing:
        await stack.client.chat_getPermalink(channel=HEALTH, message_ts="1.000001")
    assert missing.value.response["error"] == "message_not_found"


async def test_delete_removes_thread_and_tells_the_bot(stack: Stack, recorder: Recorder) -> None:
    stack.state.events_url = recorder.url
    root = await stack.client.chat_postMessage(channel=HEALTH, text="duplicate ticket")
    await stack.client.chat_postMessage(channel=HEALTH, text="reply", thread_ts=root["ts"])
    await stack.client.chat_delete(channel=HEALTH, ts=root["ts"])
    assert (await stack.client.conversations_history(channel=HEALTH))["messages"] == []
    assert stack.messages(await stack.snapshot(), HEALTH) == []
    await wait_for(lambda: len(recorder.requests) == 3)
    events = [json.loads(raw)["event"] for _, raw in recorder.requests]
    deleted = next(e for e in events if e.get("subtype") == "message_deleted")
    assert deleted["deleted_ts"] == root["ts"]


async def test_ephemeral_info_members_and_users(stack: Stack) -> None:
    sent = await stack.client.chat_postEphemeral(channel=HEALTH, user=AGENT, text="only you")
    assert sent["message_ts"]
    snap = await stack.snapshot()
    assert [(e["channel"], e["user"], e["text"]) for e in snap["ephemeral"]] == [
        (HEALTH, AGENT, "only you")
    ]
    info = await stack.client.conversations_info(channel=HEALTH)
    assert info["channel"]["name"] == "health" and info["channel"]["is_member"]
    members = await stack.client.conversations_members(channel=HEALTH)
    assert set(members["members"]) == {AGENT, CITIZEN_DESK, "UBOTSEVA"}
    user = await stack.client.users_info(user=AGENT)
    assert user["user"]["real_name"] == "Asha Rao"
    with pytest.raises(SlackApiError) as nobody:
        await stack.client.users_info(user="U0NOBODY")
    assert nobody.value.response["error"] == "user_not_found"


async def test_usergroup_members_as_slack_documents_them(stack: Stack) -> None:
    """usergroups.users.update / .list (docs.slack.dev; slack-ruby/slack-api-ref 14d2f364)."""
    assert (await stack.client.usergroups_users_list(usergroup="S0ONCALL"))["users"] == []
    done = await stack.client.usergroups_users_update(
        usergroup="S0ONCALL", users=[AGENT, CITIZEN_DESK]
    )
    group = done["usergroup"]
    assert (group["id"], group["handle"], group["users"]) == (
        "S0ONCALL",
        "health-oncall",
        [AGENT, CITIZEN_DESK],
    )
    assert group["user_count"] == 2 and group["date_update"] == int(stack.clock.now)
    await stack.client.usergroups_users_update(usergroup="S0ONCALL", users=CITIZEN_DESK)
    listed = await stack.client.usergroups_users_list(usergroup="S0ONCALL")
    assert listed["users"] == [CITIZEN_DESK]  # the entire list, replaced
    for args, error in [
        ({"usergroup": "S0ONCALL", "users": ""}, "no_users_provided"),
        ({"usergroup": "S0ONCALL", "users": "U0NOBODY"}, "invalid_users"),
        ({"usergroup": "S0NOSUCH", "users": AGENT}, "no_such_subteam"),
    ]:
        with pytest.raises(SlackApiError) as refused:
            await stack.client.api_call("usergroups.users.update", params=args)
        assert refused.value.response["error"] == error
    assert (await stack.snapshot())["usergroups"] == [
        {"id": "S0ONCALL", "handle": "health-oncall", "users": [CITIZEN_DESK]}
    ]


async def test_auth_and_unknown_channel(stack: Stack) -> None:
    me = await stack.client.auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("UBOTSEVA", "BSEVA", "T0SEVA")

    wrong = AsyncWebClient(token="xoxb-not-the-token", base_url=f"{stack.base}/api/")
    with pytest.raises(SlackApiError) as bad:
        await wrong.chat_postMessage(channel=HEALTH, text="hi")
    assert bad.value.response["error"] == "invalid_auth"
    async with stack.http.post(f"{stack.base}/api/auth.test") as resp:
        assert resp.status == 200
        assert await resp.json() == {"ok": False, "error": "not_authed"}

    with pytest.raises(SlackApiError) as nowhere:
        await stack.client.chat_postMessage(channel="C0NOWHERE", text="hi")
    assert nowhere.value.response["error"] == "channel_not_found"
    assert stack.messages(await stack.snapshot(), HEALTH) == []


async def test_form_encoded_and_get_requests(stack: Stack) -> None:
    """slack_sdk sends some methods as forms or query strings; both must mean the same."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    form = {
        "channel": "#health",
        "text": "via form",
        "blocks": json.dumps([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]),
        "metadata": json.dumps(TICKET_META),
    }
    async with stack.http.post(f"{stack.base}/api/chat.postMessage", data=form, headers=auth) as r:
        posted = await r.json()
    assert posted["ok"] and posted["channel"] == HEALTH
    query = {"channel": HEALTH, "include_all_metadata": "1"}
    async with stack.http.get(
        f"{stack.base}/api/conversations.history", params=query, headers=auth
    ) as r:
        history = await r.json()
    assert history["messages"][0]["metadata"] == TICKET_META
    assert history["messages"][0]["blocks"][0]["type"] == "section"


async def test_rate_limit_per_channel(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    stack.state.rate_limit_per_channel = 1.0
    for n in range(3):  # the burst allowance
        await stack.client.chat_postMessage(channel=HEALTH, text=f"burst {n}")
    with pytest.raises(SlackApiError) as limited:
        await stack.client.chat_postMessage(channel=HEALTH, text="one too many")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert int(limited.value.response.headers["Retry-After"]) >= 1
    await stack.client.chat_postMessage(channel=WATER, text="other channel is not limited")

    stack.clock.advance(1.0)
    await stack.client.chat_postMessage(channel=HEALTH, text="after a second")

    # slack_sdk's retry handler waits Retry-After (on the fake clock here) and then succeeds.
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        stack.clock.advance(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(builtin_async_handlers, "asyncio", SimpleNamespace(sleep=fake_sleep))
    patient = AsyncWebClient(token=TOKEN, base_url=f"{stack.base}/api/")
    patient.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    ok = await patient.chat_postMessage(channel=HEALTH, text="retried")
    assert ok["ok"] and len(waits) == 1 and waits[0] >= 1
    texts = [m["text"] for m in stack.messages(await stack.snapshot(), HEALTH)]
    assert "one too many" not in texts and texts[-1] == "retried"


async def test_posting_costs_well_under_a_millisecond(stack: Stack) -> None:
    stack.state.events_url = None
    started = time.perf_counter()
    for n in range(2000):
        stack.state.call("chat.postMessage", {"channel": HEALTH, "text": f"ticket {n}"})
    per_post = (time.perf_counter() - started) / 2000
    assert per_post < 0.0005
    page = stack.state.call("conversations.history", {"channel": HEALTH, "limit": 1})
    assert page["messages"][0]["text"] == "ticket 1999"


# ---------------------------------------------------------------- delivery to a real bolt app


async def test_human_message_reaches_bolt_signed(stack: Stack) -> None:
    status, posted = await stack.control(
        "messages", {"user": AGENT, "channel": HEALTH, "text": "oxygen at 5 < 10 & rising"}
    )
    assert status == 200 and posted["status"] == 200
    await wait_for(lambda: stack.seen.messages)
    body = stack.seen.messages[0]
    assert body["type"] == "event_callback" and body["event_id"] == posted["event_id"]
    assert body["authorizations"][0]["user_id"] == "UBOTSEVA"
    event = body["event"]
    assert (event["user"], event["channel"], event["ts"]) == (AGENT, HEALTH, posted["ts"])
    assert event["text"] == "oxygen at 5 &lt; 10 &amp; rising"  # as Slack's client encodes it
    assert event["channel_type"] == "channel" and "bot_id" not in event

    _, reply = await stack.control(
        "messages",
        {
            "user": AGENT,
            "channel": HEALTH,
            "text": "<@U0AGENT2> take it",
            "thread_ts": posted["ts"],
        },
    )
    await wait_for(lambda: len(stack.seen.messages) == 2)
    threaded = stack.seen.messages[1]["event"]
    assert threaded["thread_ts"] == posted["ts"] and threaded["ts"] == reply["ts"]
    assert threaded["parent_user_id"] == AGENT
    assert threaded["text"] == "<@U0AGENT2> take it"
    assert stack.seen.messages[1]["event_id"] != body["event_id"]


async def test_wrong_signing_secret_gets_401_and_is_retried(stack: Stack) -> None:
    stack.state.signing_secret = "not-the-secret"
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "hi"})
    assert posted["status"] == 401
    await wait_for(lambda: len(stack.state.deliveries) == 4)
    await stack.state.drain()
    attempts = [(d.retry_num, d.status, d.reason) for d in stack.state.deliveries]
    assert attempts == [(0, 401, "http_error")] + [(n, 401, "http_error") for n in (1, 2, 3)]
    assert {d.event_id for d in stack.state.deliveries} == {posted["event_id"]}
    assert stack.seen.messages == []


async def test_bot_posts_are_delivered_in_background(stack: Stack, recorder: Recorder) -> None:
    release = asyncio.Event()

    async def slow(_: int) -> int:
        await release.wait()
        return 200

    recorder.answer = slow
    stack.state.events_url = recorder.url
    posted = await stack.client.chat_postMessage(channel=HEALTH, text="ticket #1")
    assert posted["ok"]  # answered while the bot has not answered the delivery
    await wait_for(lambda: recorder.requests)
    release.set()
    headers, raw = recorder.requests[0]
    stamp = headers["X-Slack-Request-Timestamp"]
    assert headers["X-Slack-Signature"] == sign(SECRET, stamp, raw)
    assert abs(int(stamp) - time.time()) < 60
    assert headers["Content-Type"].startswith("application/json")
    envelope = json.loads(raw)
    assert envelope["event_id"].startswith("Ev") and envelope["api_app_id"]
    event = envelope["event"]
    assert (event["bot_id"], event["user"], event["ts"]) == ("BSEVA", "UBOTSEVA", posted["ts"])


async def test_timeout_is_retried_with_reason(stack: Stack, recorder: Recorder) -> None:
    never = asyncio.Event()

    async def hang_first(attempt: int) -> int:
        if attempt == 1:
            await never.wait()
        return 200

    recorder.answer = hang_first
    stack.state.events_url = recorder.url
    stack.state.delivery_timeout = 0.2
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "hi"})
    assert posted["status"] is None
    await wait_for(lambda: len(recorder.requests) == 2)
    headers, raw = recorder.requests[1]
    assert headers["X-Slack-Retry-Num"] == "1"
    assert headers["X-Slack-Retry-Reason"] == "http_timeout"
    assert json.loads(raw)["event_id"] == posted["event_id"]
    never.set()


async def test_bots_own_posts_are_ignored_by_bolt(stack: Stack) -> None:
    await stack.client.chat_postMessage(channel=HEALTH, text="from the bot")
    await wait_for(lambda: stack.state.deliveries)
    await stack.state.drain()
    assert [d.status for d in stack.state.deliveries] == [200]
    assert stack.seen.messages == []  # bolt's IgnoringSelfEvents recognised bot_id / user


async def test_edit_arrives_as_message_changed(stack: Stack) -> None:
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "v1"})
    status, edited = await stack.control(
        "messages/edit", {"user": AGENT, "channel": HEALTH, "ts": posted["ts"], "text": "v2"}
    )
    assert status == 200 and edited["status"] == 200
    await wait_for(lambda: len(stack.seen.messages) == 2)
    event = stack.seen.messages[1]["event"]
    assert event["subtype"] == "message_changed"
    assert event["message"]["text"] == "v2" and event["message"]["ts"] == posted["ts"]
    assert event["previous_message"]["text"] == "v1"
    shown = stack.messages(await stack.snapshot(), HEALTH)[0]
    assert shown["text"] == "v2" and shown["edited"]["user"] == AGENT


async def test_redeliver_sends_same_event_with_retry_header(stack: Stack) -> None:
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "once"})
    await wait_for(lambda: stack.seen.messages)
    status, again = await stack.control("redeliver", {"event_id": posted["event_id"]})
    assert status == 200 and again["status"] == 200
    await wait_for(lambda: len(stack.seen.messages) == 2)
    assert stack.seen.messages[1] == stack.seen.messages[0]
    assert stack.seen.headers[0].get("x-slack-retry-num") is None
    assert stack.seen.headers[1]["x-slack-retry-num"] == ["1"]
    missing, _ = await stack.control("redeliver", {"event_id": "EvNOPE"})
    assert missing == 404


async def test_slash_command_ack_is_shown_ephemeral(stack: Stack) -> None:
    status, result = await stack.control(
        "commands", {"user": AGENT, "channel": HEALTH, "text": "status 42"}
    )
    assert status == 200 and result["status"] == 200
    assert result["response"] == f"Ticket #42 for <@{AGENT}>: status 42"  # bolt acks in plain text
    command = stack.seen.commands[0]
    assert (command["command"], command["channel_id"], command["user_name"]) == (
        "/ticket",
        HEALTH,
        "asha",
    )
    snap = await stack.snapshot()
    assert [(e["user"], e["text"]) for e in snap["ephemeral"]] == [
        (AGENT, f"Ticket #42 for <@{AGENT}>: status 42")
    ]
    assert stack.messages(snap, HEALTH) == []  # nobody else sees it


async def test_response_url_and_in_channel_answers(stack: Stack) -> None:
    await stack.control("commands", {"user": AGENT, "channel": HEALTH, "text": "later"})
    await wait_for(lambda: stack.state.ephemeral)
    assert stack.state.ephemeral[0].text == "worked on it later"

    await stack.control("commands", {"user": AGENT, "channel": HEALTH, "text": "announce"})
    shown = stack.messages(await stack.snapshot(), HEALTH)
    assert [(m["text"], m["bot_id"]) for m in shown] == [("Ticket #7 is closed", "BSEVA")]


async def test_block_action_reaches_bolt_and_can_replace_message(stack: Stack) -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Tweet this?"}},
        {
            "type": "actions",
            "block_id": "confirm",
            "elements": [
                {
                    "type": "button",
                    "action_id": "send_reply",
                    "text": {"type": "plain_text", "text": "Send"},
                    "value": "reply-7",
                }
            ],
        },
    ]
    root = await stack.client.chat_postMessage(channel=HEALTH, text="ticket")
    prompt = await stack.client.chat_postMessage(
        channel=HEALTH, text="Tweet this?", blocks=blocks, thread_ts=root["ts"]
    )
    status, result = await stack.control(
        "actions",
        {"user": AGENT, "channel": HEALTH, "message_ts": prompt["ts"], "action_id": "send_reply"},
    )
    assert status == 200 and result["status"] == 200
    await wait_for(lambda: stack.seen.actions)
    payload = stack.seen.actions[0]
    assert payload["type"] == "block_actions" and payload["user"]["id"] == AGENT
    action = payload["actions"][0]
    assert (action["value"], action["block_id"], action["type"]) == ("reply-7", "confirm", "button")
    assert payload["container"]["message_ts"] == prompt["ts"]
    assert payload["container"]["thread_ts"] == root["ts"]
    assert payload["message"]["blocks"] == blocks

    def replaced() -> bool:
        return stack.state.message(HEALTH, prompt["ts"]).text == "Sent as tweet 1861"

    await wait_for(replaced)
    missing, err = await stack.control(
        "actions", {"user": AGENT, "channel": HEALTH, "message_ts": prompt["ts"], "action_id": "x"}
    )
    assert (missing, err["error"]) == (404, "action_not_found")


async def test_control_api_validation_and_config(stack: Stack) -> None:
    status, err = await stack.control(
        "messages", {"user": "U0NOBODY", "channel": HEALTH, "text": "x"}
    )
    assert (status, err["error"]) == (404, "user_not_found")
    status, err = await stack.control("messages", {"user": AGENT, "channel": HEALTH})
    assert status == 400
    status, cfg = await stack.control("config", {"rate_limit_per_channel": 2.5, "events_url": None})
    assert status == 200 and cfg["rate_limit_per_channel"] == 2.5 and cfg["events_url"] is None
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "x"})
    assert posted["status"] is None and posted["ts"]
    snap = await stack.snapshot()
    assert snap["bot_user_id"] == "UBOTSEVA" and snap["team"]["id"] == "T0SEVA"
    assert {u["id"] for u in snap["users"]} == {AGENT, CITIZEN_DESK}


# ---------------------------------------------------------------- Socket Mode, slack_sdk client


@dataclass
class SocketBot:
    """slack_sdk's aiohttp SocketModeClient, recording what arrives and acking as told."""

    client: SocketModeClient
    messages: list[dict[str, Any]] = field(default_factory=list)  # hello included
    requests: list[SocketModeRequest] = field(default_factory=list)
    # The ack to send for a request; None sends none.
    answer: Callable[[SocketModeRequest], SocketModeResponse | None] = lambda req: (
        SocketModeResponse(envelope_id=req.envelope_id)
    )

    def of_type(self, kind: str) -> list[SocketModeRequest]:
        return [r for r in self.requests if r.type == kind]


@pytest.fixture
async def sockets(stack: Stack) -> AsyncIterator[Callable[[], Awaitable[SocketBot]]]:
    opened: list[SocketBot] = []

    async def connect() -> SocketBot:
        web_client = AsyncWebClient(base_url=f"{stack.base}/api/")
        bot = SocketBot(SocketModeClient(app_token=APP_TOKEN, web_client=web_client))

        async def on_message(client: Any, message: dict[str, Any], raw: str | None) -> None:
            bot.messages.append(message)

        async def on_request(client: Any, req: SocketModeRequest) -> None:
            bot.requests.append(req)
            response = bot.answer(req)
            if response is not None:
                await client.send_socket_mode_response(response)

        bot.client.message_listeners.append(on_message)
        bot.client.socket_mode_request_listeners.append(on_request)
        opened.append(bot)
        before = stack.state.socket_connections
        await bot.client.connect()
        await wait_for(lambda: any(m.get("type") == "hello" for m in bot.messages))
        await wait_for(lambda: stack.state.socket_connections == before + 1)
        return bot

    yield connect
    for bot in opened:
        await bot.client.close()


async def test_socket_hello_then_event_envelope_acked_once(
    stack: Stack, sockets: Callable[[], Awaitable[SocketBot]]
) -> None:
    bot = await sockets()
    hello = bot.messages[0]
    assert hello["type"] == "hello" and hello["num_connections"] == 1
    assert hello["connection_info"] == {"app_id": "A0SEVA"} and hello["debug_info"]

    status, posted = await stack.control(
        "messages", {"user": AGENT, "channel": HEALTH, "text": "oxygen at 5 < 10"}
    )
    assert status == 200 and posted["status"] == 200  # the ack came back over the socket
    (req,) = bot.requests
    assert req.type == "events_api" and req.envelope_id
    assert (req.retry_attempt, req.retry_reason, req.accepts_response_payload) == (0, "", False)
    body = req.payload
    assert body["type"] == "event_callback" and body["event_id"] == posted["event_id"]
    assert body["api_app_id"] == "A0SEVA" and body["authorizations"][0]["user_id"] == "UBOTSEVA"
    event = body["event"]
    assert (event["user"], event["channel"], event["ts"]) == (AGENT, HEALTH, posted["ts"])
    assert event["text"] == "oxygen at 5 &lt; 10"

    await stack.state.drain()
    assert len(bot.requests) == 1  # acked: no redelivery
    assert list(stack.state.deliveries) == [
        Delivery("event", posted["event_id"], 0, 200, None, "socket")
    ]
    assert stack.seen.messages == []  # the events URL is set, but the socket wins
    assert (await stack.snapshot())["socket_connections"] == 1


async def test_socket_missing_ack_is_redelivered(
    stack: Stack, sockets: Callable[[], Awaitable[SocketBot]]
) -> None:
    bot = await sockets()
    bot.answer = lambda req: (
        None if req.retry_attempt == 0 else SocketModeResponse(envelope_id=req.envelope_id)
    )
    stack.state.delivery_timeout = 0.2
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "hi"})
    assert posted["status"] is None  # no ack in time
    await wait_for(lambda: len(bot.requests) == 2)
    await stack.state.drain()
    first, retry = bot.requests
    assert first.payload == retry.payload and retry.payload["event_id"] == posted["event_id"]
    assert (retry.retry_attempt, retry.retry_reason) == (1, "timeout")
    assert retry.envelope_id != first.envelope_id
    assert [(d.retry_num, d.status, d.reason, d.transport) for d in stack.state.deliveries] == [
        (0, None, "timeout", "socket"),
        (1, 200, None, "socket"),
    ]
    assert len(bot.requests) == 2 and stack.seen.messages == []


async def test_socket_slash_command_ack_payload_is_the_ephemeral(
    stack: Stack, sockets: Callable[[], Awaitable[SocketBot]]
) -> None:
    bot = await sockets()

    def answer(req: SocketModeRequest) -> SocketModeResponse:
        text = f"Ticket #42 for <@{req.payload['user_id']}>: {req.payload['text']}"
        return SocketModeResponse(
            envelope_id=req.envelope_id, payload={"response_type": "ephemeral", "text": text}
        )

    bot.answer = answer
    status, result = await stack.control(
        "commands", {"user": AGENT, "channel": HEALTH, "text": "status 42"}
    )
    expected = f"Ticket #42 for <@{AGENT}>: status 42"
    assert status == 200 and result["status"] == 200
    assert result["response"] == {"response_type": "ephemeral", "text": expected}
    (req,) = bot.of_type("slash_commands")
    assert req.accepts_response_payload is True
    assert (req.payload["command"], req.payload["channel_id"], req.payload["user_name"]) == (
        "/ticket",
        HEALTH,
        "asha",
    )
    assert req.payload["response_url"].startswith(stack.base + "/sandbox/response/")
    snap = await stack.snapshot()
    assert [(e["user"], e["text"]) for e in snap["ephemeral"]] == [(AGENT, expected)]
    assert stack.messages(snap, HEALTH) == [] and stack.seen.commands == []

    bot.answer = lambda req: None  # never acked: Slack tells the person, and does not retry
    stack.state.delivery_timeout = 0.2
    _, late = await stack.control("commands", {"user": AGENT, "channel": HEALTH, "text": "x"})
    assert late["status"] is None and late["response"] is None
    assert stack.state.ephemeral[-1].text == '/ticket failed with the error "operation_timeout"'
    await stack.state.drain()
    assert len(bot.of_type("slash_commands")) == 2


async def test_socket_block_action_is_an_interactive_envelope(
    stack: Stack, sockets: Callable[[], Awaitable[SocketBot]]
) -> None:
    bot = await sockets()
    blocks = [
        {
            "type": "actions",
            "block_id": "confirm",
            "elements": [{"type": "button", "action_id": "send_reply", "value": "reply-7"}],
        }
    ]
    prompt = await stack.client.chat_postMessage(channel=HEALTH, text="Tweet?", blocks=blocks)
    await wait_for(lambda: bot.of_type("events_api"))  # the bot's own post, as Slack sends it
    status, result = await stack.control(
        "actions",
        {"user": AGENT, "channel": HEALTH, "message_ts": prompt["ts"], "action_id": "send_reply"},
    )
    assert status == 200 and result["status"] == 200
    (req,) = bot.of_type("interactive")
    assert req.accepts_response_payload is False
    assert req.payload["type"] == "block_actions" and req.payload["user"]["id"] == AGENT
    assert req.payload["actions"][0]["value"] == "reply-7"
    assert stack.seen.actions == []


async def test_apps_connections_open_wants_the_app_token(stack: Stack) -> None:
    api = AsyncWebClient(base_url=f"{stack.base}/api/")
    with pytest.raises(SlackApiError) as bot_token:
        await api.apps_connections_open(app_token=TOKEN)
    assert bot_token.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as unknown:
        await api.apps_connections_open(app_token="xapp-1-not-the-token")
    assert unknown.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as app_token_elsewhere:
        await AsyncWebClient(token=APP_TOKEN, base_url=f"{stack.base}/api/").chat_postMessage(
            channel=HEALTH, text="hi"
        )
    assert app_token_elsewhere.value.response["error"] == "not_allowed_token_type"

    opened = await api.apps_connections_open(app_token=APP_TOKEN)
    url = opened["url"]
    assert url.startswith(stack.base.replace("http://", "ws://") + "/socket/")
    async with stack.http.ws_connect(url) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
            await stack.http.ws_connect(url)  # a ticket opens one connection only
        assert reused.value.status == 401


async def test_socket_reconnects_and_http_resumes_without_a_socket(
    stack: Stack, sockets: Callable[[], Awaitable[SocketBot]]
) -> None:
    first = await sockets()
    # Slack asks for a refresh: slack_sdk opens a new connection and drops the old one.
    status, sent = await stack.control("socket/disconnect", {"reason": "refresh_requested"})
    assert status == 200 and sent["sockets"] == 1
    await wait_for(
        lambda: (
            len([m for m in first.messages if m.get("type") == "hello"]) == 2
            and stack.state.socket_connections == 1
        )
    )
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "a"})
    assert posted["status"] == 200
    assert [r.payload["event_id"] for r in first.of_type("events_api")] == [posted["event_id"]]

    await first.client.close()
    await wait_for(lambda: stack.state.socket_connections == 0)
    _, by_http = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "b"})
    assert by_http["status"] == 200
    await wait_for(lambda: stack.seen.messages)
    assert stack.seen.messages[0]["event_id"] == by_http["event_id"]

    second = await sockets()
    _, again = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "c"})
    assert again["status"] == 200
    assert [r.payload["event_id"] for r in second.of_type("events_api")] == [again["event_id"]]
    assert len(stack.seen.messages) == 1
    transports = [(d.event_id, d.transport) for d in stack.state.deliveries]
    assert transports == [
        (posted["event_id"], "socket"),
        (by_http["event_id"], "http"),
        (again["event_id"], "socket"),
    ]


async def test_socket_closing_before_its_ack_is_retried_elsewhere(
    stack: Stack, sockets: Callable[[], Awaitable[SocketBot]]
) -> None:
    older = await sockets()
    newer = await sockets()  # envelopes go to the newest connection
    assert newer.messages[0]["num_connections"] == 2

    closing: list[asyncio.Task[None]] = []

    def vanish(req: SocketModeRequest) -> None:  # gone without an ack
        closing.append(asyncio.ensure_future(newer.client.close()))
        return None

    newer.answer = vanish
    _, posted = await stack.control("messages", {"user": AGENT, "channel": HEALTH, "text": "hi"})
    assert posted["status"] is None
    await wait_for(lambda: older.of_type("events_api"))
    await stack.state.drain()
    (retry,) = older.of_type("events_api")
    assert retry.payload["event_id"] == posted["event_id"]
    assert (retry.retry_attempt, retry.retry_reason) == (1, "connection_failed")
    assert [(d.retry_num, d.status, d.reason) for d in stack.state.deliveries] == [
        (0, None, "connection_failed"),
        (1, 200, None),
    ]
    await asyncio.gather(*closing)


async def test_ephemerals_fail_where_the_bot_is_not_and_response_urls_run_out() -> None:
    from sandbox.slack.model import ApiError, _ResponseTarget
    from sandbox.slack.state import SlackState

    clock = [1_700_000_000.0]
    state = SlackState(
        "xoxb-t",
        "secret",
        None,
        channels=[("C0HEALTH", "health")],
        users=[("U1", "asha", "Asha")],
        clock=lambda: clock[0],
    )
    state.add_channel("C0RANDOM", "random", bot_member=False)
    state.dm("D0ASHA")
    for channel, error in (("D0ASHA", "channel_not_found"), ("C0RANDOM", "not_in_channel")):
        with pytest.raises(ApiError, match=error):
            state.call("chat.postEphemeral", {"channel": channel, "user": "U1", "text": "hi"})
        with pytest.raises(ApiError, match=error):
            state.call("chat.postMessage", {"channel": channel, "text": "hi"})
    assert (
        state.call("conversations.info", {"channel": "C0RANDOM"})["channel"]["is_member"] is False
    )
    assert state.call("chat.postEphemeral", {"channel": "C0HEALTH", "user": "U1", "text": "x"})[
        "ok"
    ]

    state.public_base_url = "http://127.0.0.1:1/slack"
    url = state._new_response_url(_ResponseTarget("D0ASHA", "U1", None, None, clock[0]))
    rid = url.rsplit("/", 1)[-1]
    assert all(state.response_target(rid) is not None for _ in range(5))
    assert state.response_target(rid) is None  # a sixth post: expired
    late = state._new_response_url(_ResponseTarget("D0ASHA", "U1", None, None, clock[0]))
    clock[0] += 31 * 60
    assert state.response_target(late.rsplit("/", 1)[-1]) is None  # 30 minutes


def test_what_people_type_carries_rich_text_like_slacks_client() -> None:
    from sandbox.slack.model import encode_typed_text, rich_text_of

    typed = encode_typed_text("*Hi* <@U1> :pray: <https://a.in/x|the site> <!here> & `1075`")
    (block,) = rich_text_of(typed)
    elements = block["elements"][0]["elements"]
    keys = ("url", "user_id", "range", "name", "text")
    kinds = [(e["type"], next(e[k] for k in keys if k in e)) for e in elements]
    assert ("text", "Hi") in kinds and elements[0]["style"] == {"bold": True}
    assert ("user", "U1") in kinds and ("link", "https://a.in/x") in kinds
    assert ("broadcast", "here") in kinds and ("text", "1075") in kinds
    (pray,) = [e for e in elements if e["type"] == "emoji"]
    assert pray["unicode"] == "1f64f"


async def test_channel_members_and_slack_connect_guests(stack: Stack) -> None:
    """Who is in a channel (conversations.members; only members may post there, as
    Slack's client has them join first) and a guest from another workspace in a shared
    channel: their events say so (`user_team`, `is_ext_shared_channel`), as do their
    button presses (`user.team_id`) (facts-issue7 section 14)."""
    status, _ = await stack.control("channels/members", {"channel": HEALTH, "members": [AGENT]})
    assert status == 200
    members = await stack.client.conversations_members(channel=HEALTH)
    assert set(members["members"]) == {AGENT, "UBOTSEVA"}
    status, refused = await stack.control(
        "messages", {"user": CITIZEN_DESK, "channel": HEALTH, "text": "hello"}
    )
    assert refused["error"] == "not_in_channel"

    await stack.control("users", {"id": "U0GUEST", "name": "guest", "team_id": "T0PARTNER"})
    await stack.control(
        "channels/members", {"channel": HEALTH, "members": [AGENT, "U0GUEST"], "shared": True}
    )
    info = await stack.client.conversations_info(channel=HEALTH)
    assert info["channel"]["is_ext_shared"] is True
    _, posted = await stack.control(
        "messages", {"user": "U0GUEST", "channel": HEALTH, "text": "from our side"}
    )
    await wait_for(lambda: stack.seen.messages)
    body = stack.seen.messages[-1]
    assert body["is_ext_shared_channel"] is True
    assert body["authorizations"][0]["team_id"] == "T0SEVA"
    assert (body["event"]["user_team"], body["event"]["team"]) == ("T0PARTNER", "T0PARTNER")
    guest = await stack.client.users_info(user="U0GUEST")
    assert guest["user"]["team_id"] == "T0PARTNER"
