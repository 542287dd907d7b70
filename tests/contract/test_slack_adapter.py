"""SlackPlatform against the local Slack stand-in, over real HTTP both ways.

The stand-in (sandbox/slack/) serves the Web API and sends signed events to the
adapter's `handle_http`, mounted on its own aiohttp server, as Slack would.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text

from adapters.db.store import Store
from adapters.slack import platform as slack_module
from adapters.slack.platform import SlackPlatform
from bot.domain import (
    Action,
    ChannelId,
    ChatAction,
    ChatMessage,
    ChatUserId,
    MessageId,
    Outgoing,
    Quote,
    Rich,
    Text,
    ThreadRef,
    TweetId,
)
from bot.outbox import ThreadMark, root_key
from bot.ports import (
    CommandContext,
    CredentialsRefused,
    PlatformRefused,
    RateLimited,
    Standing,
    Unavailable,
)

slack_state = pytest.importorskip("sandbox.slack.state")
slack_routes = pytest.importorskip("sandbox.slack.routes")

TOKEN = "xoxb-test-token"
SECRET = "test-signing-secret"
HEALTH = ChannelId("C0HEALTH")
WATER = ChannelId("C0WATER")
ASHA = "U0AGENT1"
RAVI = "U0AGENT2"
ONCALL_GROUP = "S0HEALTHONCALL"
DEADLINE = 5.0
T = TypeVar("T")


@dataclass
class Recorder:
    """What the core would have been told, with a condition to wait on."""

    messages: list[ChatMessage] = field(default_factory=list)
    commands: list[tuple[str, CommandContext]] = field(default_factory=list)
    actions: list[tuple[str, str, ChatUserId]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    hold_commands: asyncio.Event | None = None  # set: the core is slow until released
    hold_slow: asyncio.Event | None = None  # set: a message saying "slow…" is held so

    async def _note(self, bucket: list[Any], item: Any) -> None:
        async with self.changed:
            bucket.append(item)
            self.changed.notify_all()

    async def on_message(self, message: ChatMessage) -> None:
        if self.hold_slow is not None and message.text.startswith("slow"):
            await self.hold_slow.wait()
        await self._note(self.messages, message)

    async def on_command(self, text: str, ctx: CommandContext) -> Rich:
        await self._note(self.commands, (text, ctx))
        if self.hold_commands is not None:
            await self.hold_commands.wait()
        return Rich.of(Text(f"#{text.split()[-1] if text else '?'}", bold=True), " is <open>")

    async def on_action(self, action: ChatAction) -> None:
        assert (action.platform, action.power_level) == ("slack", None)
        await self._note(self.actions, (action.id, action.value, action.user, action.channel))

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), DEADLINE)


@dataclass
class World:
    state: Any
    slack: SlackPlatform
    rec: Recorder
    inbox: Store  # the bot's own store keeps what Slack delivers
    http: aiohttp.ClientSession
    api_url: str
    sandbox_url: str
    events_url: str

    async def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.sandbox_url}/{path}", json=body) as resp:
            data: dict[str, Any] = await resp.json()
            assert resp.status == 200, data
            return data

    async def snapshot(self) -> dict[str, Any]:
        async with self.http.get(f"{self.sandbox_url}/state") as resp:
            data: dict[str, Any] = await resp.json()
            return data

    async def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        snap = await self.snapshot()
        return next(c["messages"] for c in snap["channels"] if c["id"] == channel)

    async def say(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> dict:
        body: dict[str, Any] = {"user": user, "channel": channel, "text": text}
        if thread_ts:
            body["thread_ts"] = thread_ts
        return await self.control("messages", body)

    async def fence(self, channel: str = HEALTH) -> ChatMessage:
        """A fresh human message; once it arrived and the inbox holds nothing unhandled,
        everything sent before it was handled. (Events of other threads may be handled
        beside it, so it need not be the last one.)"""
        sent = await self.say(RAVI, channel, f"fence {time.monotonic_ns()}")
        # Wait for the fence itself: events are handled from the store, after their ack.
        await self.rec.until(lambda: any(m.id == sent["ts"] for m in self.rec.messages))
        for _ in range(int(DEADLINE * 100)):
            if not await self.inbox.run(_unhandled):
                break
            await asyncio.sleep(0.01)
        return next(m for m in self.rec.messages if m.id == sent["ts"])

    def before_fence(self, fence: ChatMessage) -> list[ChatMessage]:
        return [m for m in self.rec.messages if m.id != fence.id]


def _unhandled(tx: Any) -> int:
    """Stored events not yet handled (pending or being handled)."""
    from sqlalchemy import text

    found = tx.s.execute(text("SELECT COUNT(*) FROM inbox WHERE state IN ('pending', 'handling')"))
    return int(found.scalar() or 0)


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Polls the stand-in until `done(value)` or the deadline: what the user would see, soon."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = await probe()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.01)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def world(stores: Callable[[], Store]) -> AsyncIterator[World]:
    state = slack_state.SlackState(
        TOKEN,
        SECRET,
        None,
        channels=[(HEALTH, "health"), (WATER, "water")],
        users=[(ASHA, "asha", "Asha Rao"), (RAVI, "ravi", "Ravi Kumar")],
        rate_limit_per_channel=0,
        usergroups=[(ONCALL_GROUP, "health-oncall")],
    )
    stand_in = web.Application()
    stand_in.add_subapp("/slack", slack_routes.build_slack_app(state))
    stand_in_runner, stand_in_url = await _serve(stand_in)

    http = aiohttp.ClientSession()
    inbox = stores()
    slack = SlackPlatform(
        bot_token=TOKEN,
        signing_secret=SECRET,
        inbox=inbox,
        api_base_url=f"{stand_in_url}/slack/api/",
        post_rate_per_channel=0,  # the stand-in is unlimited too, except where a test says
        session=http,
    )
    bot_app = web.Application()
    bot_app.router.add_post("/slack/events", slack.handle_http)
    bot_runner, bot_url = await _serve(bot_app)

    rec = Recorder()
    await slack.start(rec.on_message, rec.on_command, rec.on_action)
    w = World(
        state,
        slack,
        rec,
        inbox,
        http,
        api_url=f"{stand_in_url}/slack/api/",
        sandbox_url=f"{stand_in_url}/slack/sandbox",
        events_url=f"{bot_url}/slack/events",
    )
    await w.control("config", {"events_url": w.events_url})
    try:
        yield w
    finally:
        await state.drain()
        await slack.stop()
        await bot_runner.cleanup()
        await stand_in_runner.cleanup()
        await http.close()


def root(ticket: int, body: Rich, channel: ChannelId = HEALTH) -> Outgoing:
    return Outgoing(
        key=root_key(ticket),
        channel=channel,
        body=body,
        ticket=ticket,
        tweet_id=TweetId(f"18{ticket:04d}"),
        is_root=True,
    )


# --- posting -----------------------------------------------------------------------


async def test_a_ticket_root_carries_the_spec_metadata_and_escaped_text(world: World) -> None:
    body = Rich.of(
        Text("#42", bold=True),
        " from @citizen ",
        Quote("<!channel> no water since Monday @here\n<http://evil.example|official form>"),
    )
    ts = await world.slack.post(root(42, body))

    [msg] = await world.channel_messages(HEALTH)
    assert msg["ts"] == ts
    assert msg["metadata"] == {
        "event_type": "seva_ticket",
        "event_payload": {"ticket": 42, "tweet_id": "180042", "key": "root:42"},
    }
    assert "<!channel>" not in msg["text"] and "&lt;!channel&gt;" in msg["text"]
    assert "<http://evil.example" not in msg["text"]
    assert "@here" not in msg["text"]
    assert msg["text"].startswith("*#42* from @citizen \n>")
    assert world.slack.health() == {
        "connected": True,
        "mode": "http",
        "error": None,
        "since": None,
    }


async def test_a_thread_post_carries_its_key_and_lands_in_the_thread(world: World) -> None:
    root_ts = await world.slack.post(root(1, Rich.of("root")))
    reply = Outgoing("followup:99", HEALTH, Rich.of("more"), thread_root=root_ts, ticket=1)
    reply_ts = await world.slack.post(reply)

    messages = {m["ts"]: m for m in await world.channel_messages(HEALTH)}
    assert messages[reply_ts]["thread_ts"] == root_ts
    assert messages[reply_ts]["metadata"] == {
        "event_type": "seva_post",
        "event_payload": {"key": "followup:99", "ticket": 1},
    }


async def test_find_returns_a_landed_post_by_key_and_none_otherwise(world: World) -> None:
    root_ts = await world.slack.post(root(7, Rich.of("ticket 7")))
    await world.slack.post(root(8, Rich.of("ticket 8"), channel=WATER))
    reply = Outgoing("reply:7:1", HEALTH, Rich.of("answer"), thread_root=root_ts, ticket=7)
    reply_ts = await world.slack.post(reply)

    assert await world.slack.find(root(7, Rich.of("ticket 7"))) == root_ts
    assert await world.slack.find(root(8, Rich.of("ticket 8"))) is None  # other channel
    assert await world.slack.find(reply) == reply_ts
    other = Outgoing("reply:7:2", HEALTH, Rich.of("answer"), thread_root=root_ts, ticket=7)
    assert await world.slack.find(other) is None


async def test_find_tells_a_moved_tickets_roots_apart(world: World) -> None:
    """A ticket moved away from a channel and back has two roots there: each is found by
    its own key, never by the ticket number the two share."""
    first = await world.slack.post(root(7, Rich.of("ticket 7")))
    again = Outgoing("moved:7:2", HEALTH, Rich.of("ticket 7, back"), ticket=7, is_root=True)
    assert await world.slack.find(again) is None
    assert await world.slack.post(again) != first
    assert await world.slack.find(root(7, Rich.of("ticket 7"))) == first


async def test_permalink_is_slacks_own(world: World) -> None:
    ts = await world.slack.post(root(7, Rich.of("ticket 7")))
    link = await world.slack.permalink(HEALTH, ts)
    assert link.startswith("https://") and link.endswith(
        f"/archives/{HEALTH}/p{ts.replace('.', '')}"
    )
    with pytest.raises(PlatformRefused, match="message_not_found"):
        await world.slack.permalink(HEALTH, MessageId("1.000001"))


async def test_find_ignores_a_human_message_that_looks_like_ours(world: World) -> None:
    await world.say(ASHA, HEALTH, "root:5")
    assert await world.slack.find(root(5, Rich.of("x"))) is None


async def test_pacing_at_5_per_second_spaces_posts_per_channel(world: World) -> None:
    paced = SlackPlatform(
        bot_token=TOKEN,
        signing_secret=SECRET,
        inbox=world.inbox,
        api_base_url=world.api_url,
        post_rate_per_channel=5,
        session=world.http,
    )

    def post(n: int, channel: ChannelId) -> Outgoing:
        return Outgoing(f"p:{channel}:{n}", channel, Rich.of(f"post {n}"))

    health = [asyncio.create_task(paced.post(post(n, HEALTH))) for n in range(5)]
    water = [asyncio.create_task(paced.post(post(n, WATER))) for n in range(2)]
    health_ts = sorted(float(ts) for ts in await asyncio.gather(*health))
    water_ts = sorted(float(ts) for ts in await asyncio.gather(*water))

    # The stand-in stamps each post when it arrives, so one slow request on a loaded
    # machine can shorten the next gap; the rate over the run is what pacing promises.
    gaps = [b - a for a, b in pairwise(health_ts)]
    assert health_ts[-1] - health_ts[0] >= 0.75, gaps  # 5 posts at 5/s span 0.8 s
    assert min(gaps) >= 0.1, gaps  # and never a burst
    # Channels are independent: both water posts landed while health was still queued
    # (water's second is due at 0.2 s, health's third at 0.4 s).
    assert water_ts[-1] < health_ts[2], (water_ts, health_ts)
    await paced.stop()


async def test_a_429_becomes_rate_limited_and_posts_nothing(world: World) -> None:
    """The outbox, not the SDK, waits out Retry-After: the claim stays short and exact."""
    # The stand-in allows 3 posts at once per channel, then 1 per second.
    await world.control("config", {"rate_limit_per_channel": 1})
    for n in range(3):
        await world.slack.post(Outgoing(f"burst:{n}", HEALTH, Rich.of(f"burst {n}")))
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as refused:
        await world.slack.post(Outgoing("burst:3", HEALTH, Rich.of("burst 3")))
    assert refused.value.until >= before + timedelta(seconds=0.5)

    texts = [m["text"] for m in await world.channel_messages(HEALTH)]
    assert texts == [f"burst {n}" for n in range(3)]


@pytest.mark.parametrize(
    "error,expected",
    [
        ("internal_error", Unavailable),
        ("fatal_error", Unavailable),
        ("service_unavailable", Unavailable),
        ("request_timeout", Unavailable),
        ("ratelimited", RateLimited),
        ("rate_limited", RateLimited),
        ("invalid_auth", CredentialsRefused),
        ("not_authed", CredentialsRefused),
        ("token_revoked", CredentialsRefused),
        ("token_expired", CredentialsRefused),
        ("account_inactive", CredentialsRefused),
        ("channel_not_found", PlatformRefused),
        ("not_in_channel", PlatformRefused),
        ("is_archived", PlatformRefused),
        ("msg_too_long", PlatformRefused),
        ("invalid_blocks", PlatformRefused),
    ],
)
async def test_each_slack_error_is_met_as_a_retry_can_cure_it(
    world: World, error: str, expected: type[Exception]
) -> None:
    """SPEC section 5: retry (and look first), pause until a call succeeds, or refuse
    for good, decided by Slack's error string whatever the HTTP status."""
    await world.control("faults", {"method": "chat.postMessage", "error": error})
    with pytest.raises(expected) as raised:
        await world.slack.post(root(7, Rich.of("root")))
    if expected is PlatformRefused:
        assert not isinstance(raised.value, CredentialsRefused)
    assert await world.channel_messages(HEALTH) == []
    assert world.slack.health()["connected"] is (expected is PlatformRefused)
    await world.slack.post(root(7, Rich.of("root")))  # the next call goes through
    assert world.slack.health()["connected"] is True


async def test_a_fatal_error_after_the_post_landed_is_found_not_posted_twice(
    world: World,
) -> None:
    """fatal_error: "It's possible some aspect of the operation succeeded"."""
    await world.control(
        "faults", {"method": "chat.postMessage", "error": "fatal_error", "after_commit": True}
    )
    with pytest.raises(Unavailable):
        await world.slack.post(root(8, Rich.of("root")))
    found = await world.slack.find(root(8, Rich.of("root")))
    [msg] = await world.channel_messages(HEALTH)
    assert found == msg["ts"]


async def test_a_revoked_token_refuses_every_call_until_restored(world: World) -> None:
    await world.control("token", {"revoked": "token_revoked"})
    with pytest.raises(CredentialsRefused):
        await world.slack.post(root(9, Rich.of("root")))
    with pytest.raises(CredentialsRefused):
        await world.slack.mark(ThreadRef("slack", HEALTH, MessageId("1.1")), ThreadMark.CLOSED)
    assert world.slack.health()["error"] == "reactions.add: token_revoked"
    await world.control("token", {"revoked": None})
    await world.slack.post(root(9, Rich.of("root")))
    assert world.slack.health()["connected"] is True


async def test_buttons_are_rendered_and_a_press_reaches_on_action(world: World) -> None:
    confirm = Outgoing(
        "confirm:3:1",
        HEALTH,
        Rich.of("Tweet this? ", Quote("Water tankers reach ward 5 by 6 pm")),
        ticket=3,
        actions=(Action("seva_send", "Send", "3:1"), Action("seva_cancel", "Cancel", "3:1")),
    )
    ts = await world.slack.post(confirm)
    [msg] = await world.channel_messages(HEALTH)
    buttons = msg["blocks"][1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("seva_send", "3:1"),
        ("seva_cancel", "3:1"),
    ]
    assert buttons[0]["style"] == "primary" and "style" not in buttons[1]

    answer = await world.control(
        "actions", {"user": ASHA, "channel": HEALTH, "message_ts": ts, "action_id": "seva_send"}
    )
    assert answer["status"] == 200
    await world.rec.until(lambda: len(world.rec.actions) == 1)
    assert world.rec.actions == [("seva_send", "3:1", ChatUserId(ASHA), HEALTH)]


async def test_mark_mirrors_states_as_reactions_idempotently(world: World) -> None:
    root_ts = await world.slack.post(root(9, Rich.of("ticket 9")))
    thread = ThreadRef("slack", HEALTH, root_ts)

    async def reactions() -> set[str]:
        [msg] = await world.channel_messages(HEALTH)
        return {r["name"] for r in msg["reactions"]}

    await world.slack.mark(thread, "claimed")
    await world.slack.mark(thread, "closed")
    await world.slack.mark(thread, "closed")
    assert await reactions() == {"eyes", "white_check_mark"}
    await world.slack.mark(thread, "open")
    await world.slack.mark(thread, "open")
    assert await reactions() == {"eyes"}


# --- receiving ---------------------------------------------------------------------


async def test_a_human_thread_reply_reaches_on_message_as_its_reader_sees_it(
    world: World,
) -> None:
    root_ts = await world.slack.post(root(4, Rich.of("ticket 4")))
    sent = await world.say(ASHA, HEALTH, "Tankers & crews <on the way> <@U0AGENT2>", root_ts)
    assert sent["status"] == 200

    await world.rec.until(lambda: len(world.rec.messages) == 1)
    [msg] = world.rec.messages
    assert msg == ChatMessage(
        platform="slack",
        channel=HEALTH,
        id=MessageId(sent["ts"]),
        sender=ChatUserId(ASHA),
        text="Tankers & crews <on the way> ravi",  # a mention reads as the display name
        thread_root=root_ts,
        event_id=sent["event_id"],
    )


async def test_a_top_level_human_message_has_no_thread_root(world: World) -> None:
    msg = await world.fence()
    assert msg.thread_root is None and msg.sender == RAVI


async def test_own_posts_edits_and_redeliveries_reach_on_message_once(world: World) -> None:
    root_ts = await world.slack.post(root(5, Rich.of("ticket 5")))
    await world.slack.post(Outgoing("note:5", HEALTH, Rich.of("bot note"), thread_root=root_ts))
    sent = await world.say(ASHA, HEALTH, "first answer", root_ts)
    await world.control(
        "messages/edit", {"user": ASHA, "channel": HEALTH, "ts": sent["ts"], "text": "edited"}
    )
    redelivered = await world.control("redeliver", {"event_id": sent["event_id"]})
    assert redelivered["status"] == 200  # acknowledged, so Slack stops retrying
    await world.state.drain()  # the stand-in's deliveries of the bot's own posts are done

    fence = await world.fence()
    seen = [(m.text, m.edited) for m in world.before_fence(fence)]
    # The edit comes once, marked as one (never a new message to tweet).
    assert seen == [("first answer", False), ("edited", True)]
    assert world.rec.messages[1].id == sent["ts"] and world.rec.messages[1].thread_root == root_ts


async def test_a_bang_command_in_a_thread_is_answered_ephemerally_there(world: World) -> None:
    root_ts = await world.slack.post(root(12, Rich.of("ticket 12")))
    await world.say(ASHA, HEALTH, "!close duplicate", root_ts)
    await world.say(ASHA, HEALTH, "!ticket status 12")

    await world.rec.until(lambda: len(world.rec.commands) == 2)
    ephemeral = await eventually(
        lambda: _ephemeral(world), lambda notes: len(notes) >= 2
    )  # respond() follows on_command
    # Two threads' events (the channel is a thread of its own): side by side, any order.
    assert sorted(world.rec.commands, key=lambda c: c[0]) == [
        ("close duplicate", CommandContext("slack", HEALTH, ChatUserId(ASHA), root_ts)),
        ("status 12", CommandContext("slack", HEALTH, ChatUserId(ASHA), None)),
    ]
    assert sorted((e["text"], e["user"], e["thread_ts"] or "") for e in ephemeral) == [
        ("*#12* is &lt;open&gt;", ASHA, ""),  # asked outside a thread: answered outside
        ("*#duplicate* is &lt;open&gt;", ASHA, root_ts),  # asked in the thread: answered there
    ]
    assert world.rec.messages == []  # commands are not messages
    assert len(await world.channel_messages(HEALTH)) == 3  # nothing public was posted


async def test_slash_command_is_answered_in_the_ack_as_an_ephemeral(world: World) -> None:
    result = await world.control(
        "commands", {"user": RAVI, "channel": WATER, "text": "status 4", "command": "/ticket"}
    )
    assert result["status"] == 200
    assert result["response"] == {"response_type": "ephemeral", "text": "*#4* is &lt;open&gt;"}
    assert world.rec.commands == [
        ("status 4", CommandContext("slack", WATER, ChatUserId(RAVI), None))
    ]
    ephemeral = await _ephemeral(world)
    assert [(e["user"], e["channel"], e["text"]) for e in ephemeral] == [
        (RAVI, WATER, "*#4* is &lt;open&gt;")
    ]


async def test_a_slow_slash_command_is_acked_in_time_and_answered_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_module, "_SLASH_ANSWER_BUDGET", 0.05)
    world.rec.hold_commands = asyncio.Event()  # the core is slow (a busy database, say)
    result = await world.control("commands", {"user": RAVI, "channel": WATER, "text": "list"})
    assert result["response"] == {"response_type": "ephemeral", "text": "Working on it…"}
    world.rec.hold_commands.set()
    ephemeral = await eventually(lambda: _ephemeral(world), lambda notes: len(notes) >= 2)
    assert [(e["user"], e["text"]) for e in ephemeral] == [
        (RAVI, "Working on it…"),
        (RAVI, "*#list* is &lt;open&gt;"),
    ]


async def _ephemeral(world: World) -> list[dict[str, Any]]:
    return list((await world.snapshot())["ephemeral"])


def _event_body(event_id: str) -> bytes:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0SEVA",
            "api_app_id": "A0SEVA",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": HEALTH,
                "user": ASHA,
                "text": "forged reply",
                "ts": "1700000000.000100",
            },
        }
    ).encode()


def _signature(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("forgery", ["unsigned", "wrong secret", "tampered", "six minutes old"])
async def test_a_badly_signed_request_gets_401_and_changes_nothing(
    world: World, forgery: str
) -> None:
    body = _event_body("EvFORGED1")
    now = str(int(time.time()))
    headers = {"Content-Type": "application/json"}
    if forgery == "wrong secret":
        headers |= {
            "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": _signature(now, body, "x"),
        }
    elif forgery == "tampered":
        headers |= {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": _signature(now, body)}
        body = body.replace(b"forged reply", b"forged reply!")
    elif forgery == "six minutes old":
        old = str(int(time.time()) - 360)
        headers |= {"X-Slack-Request-Timestamp": old, "X-Slack-Signature": _signature(old, body)}

    async with world.http.post(world.events_url, data=body, headers=headers) as resp:
        assert resp.status == 401

    stored = await world.inbox.run(lambda tx: tx.s.scalar(text("SELECT COUNT(*) FROM inbox")))
    assert stored == 0  # not even stored
    fence = await world.fence()
    assert world.before_fence(fence) == []


async def test_a_correctly_signed_request_is_accepted(world: World) -> None:
    """The control for the forgery test: the same request, signed, is delivered."""
    body = _event_body("EvGENUINE1")
    now = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": now,
        "X-Slack-Signature": _signature(now, body),
    }
    async with world.http.post(world.events_url, data=body, headers=headers) as resp:
        assert resp.status == 200
    await world.rec.until(lambda: len(world.rec.messages) == 1)
    assert world.rec.messages[0].text == "forged reply"


async def test_a_wrong_token_is_refused_at_start_with_a_clear_message(
    world: World, stores: Callable[[], Store]
) -> None:
    bad = SlackPlatform(
        bot_token="xoxb-wrong",
        signing_secret=SECRET,
        inbox=stores(),
        api_base_url=world.api_url,
        session=world.http,
    )
    with pytest.raises(PlatformRefused, match="invalid_auth") as refused:
        await bad.start(world.rec.on_message, world.rec.on_command, world.rec.on_action)
    assert "xoxb-wrong" not in str(refused.value)
    assert bad.health()["connected"] is False
    await bad.stop()


# --- user groups (oncall.slack_usergroup) ---------------------------------------------


async def test_a_user_group_is_made_exactly_the_members_given(world: World) -> None:
    assert await world.slack.group_members(ONCALL_GROUP) == []
    await world.slack.set_group_members(ONCALL_GROUP, [ChatUserId(ASHA)])
    assert await world.slack.group_members(ONCALL_GROUP) == [ASHA]
    await world.slack.set_group_members(ONCALL_GROUP, [ChatUserId(RAVI)])  # the whole list
    assert await world.slack.group_members(ONCALL_GROUP) == [RAVI]
    assert world.state.usergroups[ONCALL_GROUP].users == [RAVI]


async def test_a_user_group_slack_refuses_is_platform_refused_naming_the_error(
    world: World,
) -> None:
    with pytest.raises(PlatformRefused, match="no_such_subteam"):
        await world.slack.group_members("S0NOSUCHGROUP")
    with pytest.raises(PlatformRefused, match="invalid_users"):
        await world.slack.set_group_members(ONCALL_GROUP, [ChatUserId("U0NOBODY")])
    assert world.state.usergroups[ONCALL_GROUP].users == []  # nothing changed
    assert world.slack.health()["connected"] is True  # Slack answered: not an outage


# --- who is where ------------------------------------------------------------------


async def test_standing_is_membership_of_the_channel_from_conversations_members(
    world: World,
) -> None:
    await world.control("channels/members", {"channel": WATER, "members": [RAVI]})
    assert await world.slack.standing(WATER, ChatUserId(RAVI)) == Standing(member=True)
    assert await world.slack.standing(WATER, ChatUserId(ASHA)) == Standing(member=False)
    assert await world.slack.standing(HEALTH, ChatUserId(ASHA)) == Standing(member=True)
    with pytest.raises(PlatformRefused):  # the core reads a failed lookup as "not a member"
        await world.slack.standing(ChannelId("C0NOWHERE"), ChatUserId(ASHA))


async def test_a_slack_connect_guests_message_arrives_marked_external(world: World) -> None:
    await world.control("users", {"id": "U0GUEST", "name": "guest", "team_id": "T0PARTNER"})
    await world.control("channels/members", {"channel": HEALTH, "members": None, "shared": True})
    root_ts = await world.slack.post(root(6, Rich.of("ticket 6")))
    await world.say("U0GUEST", HEALTH, "from the partner", root_ts)
    await world.say(ASHA, HEALTH, "from us", root_ts)
    await world.rec.until(lambda: len(world.rec.messages) == 2)
    marks = {m.sender: m.external for m in world.rec.messages}
    assert marks == {"U0GUEST": True, ASHA: False}


async def test_one_threads_messages_wait_in_order_while_another_threads_go_on(
    world: World,
) -> None:
    """The events of a claimed batch are handled in order within a thread (a message,
    then its next) and beside those of other threads: a slow answer holds up its own
    thread only. (The next batch is claimed once this one is done.)"""
    world.rec.hold_slow = release = asyncio.Event()
    first = await world.slack.post(root(31, Rich.of("ticket 31")))
    second = await world.slack.post(root(32, Rich.of("ticket 32")))
    await world.slack._worker.stop()  # the three are stored (acked) and claimed together
    await world.say(ASHA, HEALTH, "slow answer", first)
    await world.say(ASHA, HEALTH, "then this, after it", first)
    await world.say(ASHA, HEALTH, "meanwhile here", second)
    await world.state.drain()
    world.slack._worker.start()
    world.slack._worker.wake()
    await world.rec.until(lambda: [m.text for m in world.rec.messages] == ["meanwhile here"])
    await asyncio.sleep(0.1)
    assert [m.text for m in world.rec.messages] == ["meanwhile here"]  # thread 31 waits
    release.set()
    await world.rec.until(lambda: len(world.rec.messages) == 3)
    assert [m.text for m in world.rec.messages] == [
        "meanwhile here",
        "slow answer",
        "then this, after it",
    ]
