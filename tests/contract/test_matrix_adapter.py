"""The Matrix adapter against a real Synapse: what agents and citizens would notice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.db.store import Store
from adapters.matrix.platform import MatrixPlatform
from adapters.matrix.render import render, txn_id
from bot.addressing import command_text
from bot.domain import (
    Action,
    ChannelId,
    ChatAction,
    ChatMessage,
    ChatUserId,
    Link,
    Mention,
    MessageId,
    Outgoing,
    Quote,
    Rich,
    Text,
    ThreadRef,
)
from bot.outbox import ActionId
from bot.ports import CommandContext, PlatformRefused, Unavailable
from tests.synapse import Homeserver, MatrixUser, check_budget, free_port, synapse

__all__ = ["synapse"]  # the session fixture, imported so pytest finds it here

UNTRUSTED = '<b>x</b> @room <a href="https://evil.example">click</a>'


# --- pure rendering: no homeserver needed


def test_untrusted_text_is_escaped_and_cannot_ping_the_room() -> None:
    out = render(Rich.of(Text(UNTRUSTED), Quote("@ROOM look\n<i>")))
    assert "<b>" not in out.formatted_body and "<a href" not in out.formatted_body
    assert "&lt;b&gt;x&lt;/b&gt;" in out.formatted_body
    assert "@room" not in out.body.lower() and "@room" not in out.formatted_body.lower()
    assert "<blockquote>" in out.formatted_body
    assert out.user_ids == []


def test_mentions_become_pills_and_links_keep_escaped_labels() -> None:
    out = render(
        Rich.of(
            Mention(ChatUserId("@oncall:hs")),
            " see ",
            Link("https://x.com/a/status/1?x=1&y=2", "<tweet>"),
            Link("javascript:alert(1)", "js"),
        )
    )
    assert '<a href="https://matrix.to/#/@oncall:hs">@oncall:hs</a>' in out.formatted_body
    assert '<a href="https://x.com/a/status/1?x=1&amp;y=2">&lt;tweet&gt;</a>' in out.formatted_body
    assert 'href="javascript' not in out.formatted_body
    assert out.user_ids == ["@oncall:hs"]
    assert out.body.startswith("@oncall:hs see <tweet> (https://x.com/a/status/1?x=1&y=2)")


def test_commands_are_parsed_with_or_without_the_ticket_word() -> None:
    assert command_text("!ticket status 42") == "status 42"
    assert command_text("  !close ") == "close"
    assert command_text("!Ticket") == ""
    assert command_text("!tickets") == "tickets"
    assert command_text("status 42") is None
    assert txn_id("root:42") == txn_id("root:42") != txn_id("root:43")


# --- against Synapse


class Recorder:
    """The core's side of the port: records calls and lets a test await them."""

    def __init__(self) -> None:
        self.messages: list[ChatMessage] = []
        self.commands: list[tuple[str, CommandContext]] = []
        self.actions: list[tuple[str, str, str, int | None]] = []
        self._changed = asyncio.Event()

    async def on_message(self, message: ChatMessage) -> None:
        self.messages.append(message)
        self._changed.set()

    async def on_command(self, text: str, ctx: CommandContext) -> Rich:
        self.commands.append((text, ctx))
        self._changed.set()
        return Rich.of(f"answer to {text}")

    async def on_action(self, action: ChatAction) -> None:
        assert action.platform == "matrix"
        self.actions.append((action.id, action.value, action.user, action.power_level))
        self._changed.set()

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    async def until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        try:
            async with asyncio.timeout(within):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"timed out; messages={self.texts()} commands={self.commands} "
                f"actions={self.actions}"
            ) from None


@dataclass(frozen=True)
class World:
    hs: Homeserver
    admin: MatrixUser
    bot: MatrixUser
    agent: MatrixUser
    member: MatrixUser

    def new_room(self, *, encrypted: bool = False, version: str = "11") -> ChannelId:
        """A room where the agent has level 50, the member 0, and the bot is invited."""
        room = self.hs.create_room(
            self.admin,
            invite=(self.bot, self.agent, self.member),
            power_levels={self.agent.user_id: 50, self.bot.user_id: 50},
            encrypted=encrypted,
            room_version=version,
        )
        self.hs.join(self.agent, room)
        self.hs.join(self.member, room)
        return ChannelId(room)


@pytest.fixture(scope="module")
def world(synapse: Homeserver) -> Iterator[World]:
    began = time.monotonic()
    tag = uuid.uuid4().hex[:6]
    users = [synapse.register(f"{name}-{tag}") for name in ("admin", "bot", "agent", "member")]
    w = World(synapse, *users)
    w.new_room()  # the first room: the budget counts start, users and a room
    check_budget(began - synapse.startup_seconds, "Synapse start, users and room")
    yield w


Factory = Callable[..., MatrixPlatform]


@pytest.fixture
async def platforms(world: World, stores: Callable[[], Store]) -> AsyncIterator[Factory]:
    made: list[MatrixPlatform] = []

    def make(rooms: list[ChannelId], state: Store | None = None, **kwargs: Any) -> MatrixPlatform:
        """A platform keeping its state and inbox in `state`, the bot's store (a restart
        passes the same one), or in a fresh one."""
        if "password" not in kwargs:
            kwargs.setdefault("access_token", world.bot.access_token)
        store = state or stores()
        platform = MatrixPlatform(
            world.hs.base_url,
            world.bot.user_id,
            rooms=rooms,
            state=store,
            inbox=store,
            **kwargs,
        )
        made.append(platform)
        return platform

    yield make
    for platform in made:
        await platform.stop()


async def started(
    make: Factory, room: ChannelId, state: Store | None = None, **kwargs: Any
) -> tuple[MatrixPlatform, Recorder]:
    platform, rec = make([room], state, **kwargs), Recorder()
    await platform.start(rec.on_message, rec.on_command, rec.on_action)
    return platform, rec


def outgoing(room: ChannelId, body: Rich, **kwargs: Any) -> Outgoing:
    return Outgoing(key=f"test:{uuid.uuid4().hex}", channel=room, body=body, **kwargs)


async def test_root_pings_only_the_mentioned_member(world: World, platforms: Factory) -> None:
    room = world.new_room()
    platform, _ = await started(platforms, room)
    agent = ChatUserId(world.agent.user_id)
    message = outgoing(room, Rich.of("New ticket #7 for ", Mention(agent), ": ", Quote(UNTRUSTED)))
    event_id = await platform.post(message)

    content = world.hs.event(world.admin, room, event_id)["content"]
    assert content["msgtype"] == "m.text"
    assert content["format"] == "org.matrix.custom.html"
    pill = f'<a href="https://matrix.to/#/{agent}">{agent}</a>'
    assert pill in content["formatted_body"]
    assert content["m.mentions"] == {"user_ids": [agent]}
    assert "&lt;b&gt;x&lt;/b&gt;" in content["formatted_body"]
    assert "<b>" not in content["formatted_body"] and "evil.example" not in _hrefs(content)
    assert "@room" not in content["body"].lower()
    assert content["org.sevabridge.key"] == message.key

    # What people notice: the mentioned agent is highlighted, nobody else is.
    assert await _highlighted(world.hs, world.agent, event_id)
    assert not await _highlighted(world.hs, world.member, event_id, wait=False)


async def test_thread_replies_arrive_with_root_and_power_level(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    early = world.hs.send_text(world.agent, room, "backlog from before the bot started")
    platform, rec = await started(platforms, room)
    root = await platform.post(outgoing(room, Rich.of("ticket #1"), ticket=1))

    world.hs.send_thread_reply(world.agent, room, root, "We have sent an ambulance.")
    world.hs.send_thread_reply(world.member, room, root, "I can help too")
    await rec.until(lambda: len(rec.messages) >= 2)

    by_agent, by_member = rec.messages
    assert (by_agent.text, by_agent.thread_root, by_agent.power_level) == (
        "We have sent an ambulance.",
        root,
        50,
    )
    assert by_agent.sender == world.agent.user_id and by_agent.platform == "matrix"
    assert by_agent.id == by_agent.event_id and by_agent.channel == room
    assert (by_member.sender, by_member.power_level) == (world.member.user_id, 0)
    assert early not in {m.id for m in rec.messages}


async def test_the_creator_of_a_v12_room_outranks_every_level(
    world: World, platforms: Factory
) -> None:
    room = world.new_room(version="12")
    platform, rec = await started(platforms, room)
    root = await platform.post(outgoing(room, Rich.of("ticket #2")))
    world.hs.send_thread_reply(world.admin, room, root, "reply from the room's creator")
    world.hs.send_thread_reply(world.agent, room, root, "reply from an agent")
    await rec.until(lambda: len(rec.messages) >= 2)

    creator, agent = rec.messages
    assert creator.power_level is not None and creator.power_level > 100
    assert agent.power_level == 50


async def test_commands_reach_on_command_and_are_answered_with_notices(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, rec = await started(platforms, room)
    root = await platform.post(outgoing(room, Rich.of("ticket #42"), ticket=42))

    world.hs.send_text(world.agent, room, "!ticket status 42")
    world.hs.send_thread_reply(world.agent, room, root, "!close")
    await rec.until(lambda: len(rec.commands) >= 2)

    (status, ctx1), (close, ctx2) = rec.commands
    assert status == "status 42"
    # The asker's power level comes along: the core decides who may change a ticket.
    agent = ChatUserId(world.agent.user_id)
    assert ctx1 == CommandContext("matrix", room, agent, None, power_level=50)
    assert close == "close" and ctx2.thread_root == root
    assert rec.messages == []

    notice = await world.hs.await_event(
        world.agent, room, lambda e: e["content"].get("body") == "answer to status 42"
    )
    assert notice["content"]["msgtype"] == "m.notice"
    assert "m.relates_to" not in notice["content"]
    in_thread = await world.hs.await_event(
        world.agent, room, lambda e: e["content"].get("body") == "answer to close"
    )
    assert in_thread["content"]["msgtype"] == "m.notice"
    assert in_thread["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert in_thread["content"]["m.relates_to"]["event_id"] == root


async def test_own_messages_edits_and_bot_notices_never_reach_on_message(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, rec = await started(platforms, room)
    root = await platform.post(outgoing(room, Rich.of("ticket #3")))
    await platform.post(outgoing(room, Rich.of("in thread"), thread_root=root))
    original = world.hs.send_thread_reply(world.agent, room, root, "first draft")
    world.hs.send_edit(world.agent, room, original, "second draft")
    world.hs.send_text(world.member, room, "I am another bot", msgtype="m.notice")
    world.hs.react(world.agent, room, root, "👀")
    world.hs.send_text(world.agent, room, "last")
    await rec.until(lambda: "last" in rec.texts())

    assert rec.texts() == ["first draft", "last"]
    assert all(m.sender != world.bot.user_id for m in rec.messages)


async def test_restart_neither_replays_nor_loses_events(
    world: World, platforms: Factory, stores: Callable[[], Store]
) -> None:
    room = world.new_room()
    state = stores()
    first, rec1 = await started(platforms, room, state, password=world.bot.password)
    world.hs.send_text(world.agent, room, "before the restart")
    await rec1.until(lambda: rec1.texts() == ["before the restart"])
    await first.stop()
    assert first.health()["connected"] is False

    # More than the sync timeline holds, so the gap must be fetched from history.
    while_down = [f"while down {i}" for i in range(7)]
    for text in while_down:
        world.hs.send_text(world.agent, room, text)
    _, rec2 = await started(platforms, room, state, password=world.bot.password, timeline_limit=3)
    world.hs.send_text(world.agent, room, "after the restart")
    await rec2.until(lambda: "after the restart" in rec2.texts())

    assert rec2.texts() == [*while_down, "after the restart"]
    devices = world.hs.request("GET", "/_matrix/client/v3/devices", token=world.bot.access_token)
    assert len(devices["devices"]) == 2, "password logins must reuse the stored device"


async def test_find_returns_a_post_by_its_key_and_resends_are_deduplicated(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, _ = await started(platforms, room)
    message = outgoing(room, Rich.of("ticket #9"), ticket=9)
    assert await platform.find(message) is None

    event_id = await platform.post(message)
    for i in range(3):
        await platform.post(outgoing(room, Rich.of(f"later {i}")))

    assert await platform.find(message) == event_id
    assert await platform.post(message) == event_id
    ours = [e for e in world.hs.messages(world.admin, room) if e["sender"] == world.bot.user_id]
    assert sum(e["content"].get("org.sevabridge.key") == message.key for e in ours) == 1


async def test_a_check_mark_from_an_agent_confirms_the_action(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, rec = await started(platforms, room)
    root = await platform.post(outgoing(room, Rich.of("ticket #5")))
    confirm = await platform.post(
        outgoing(
            room,
            Rich.of("Will tweet: thanks, help is on the way"),
            thread_root=MessageId(root),
            actions=(Action("send", "Send", "reply-77"),),
        )
    )
    body = world.hs.event(world.agent, room, confirm)["content"]["body"]
    assert body.endswith("React with ✅ to send.")

    world.hs.react(world.member, room, confirm, "✅")  # below the power level
    world.hs.react(world.agent, room, confirm, "✔️")
    world.hs.react(world.admin, room, confirm, "✅")  # a second confirmation
    world.hs.send_text(world.agent, room, "done")
    await rec.until(lambda: "done" in rec.texts())

    # Every confirmation reaches the core with the sender's power level; the core sends
    # the reply once (compare-and-set) and only for members at or above the level
    # (tests/unit: a double Send tweets once, a Send below the level changes nothing).
    assert [(a, v, user) for a, v, user, _ in rec.actions] == [
        ("send", "reply-77", world.member.user_id),
        ("send", "reply-77", world.agent.user_id),
        ("send", "reply-77", world.admin.user_id),
    ]
    member, agent, admin = (level for *_, level in rec.actions)
    assert member is not None and agent is not None and admin is not None
    assert member < 50 <= agent <= admin


async def test_the_safety_reply_has_a_key_of_its_own_and_a_passing_thumbs_up_is_not_it(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, rec = await started(platforms, room)
    root = await platform.post(
        outgoing(
            room,
            Rich.of("ticket #6: contains: phone number"),
            actions=(Action(ActionId.PRIVACY_REPLY, "Send the safety reply", "6:18:0"),),
        )
    )
    body = world.hs.event(world.agent, room, root)["content"]["body"]
    assert body.endswith("React with 🛡️ to send the safety reply.")
    world.hs.react(world.agent, room, root, "👍")
    world.hs.react(world.agent, room, root, "✅")
    world.hs.react(world.agent, room, root, "🛡️")
    world.hs.send_text(world.agent, room, "done")
    await rec.until(lambda: "done" in rec.texts())
    assert [(a, v) for a, v, *_ in rec.actions] == [(ActionId.PRIVACY_REPLY, "6:18:0")]


async def test_standing_is_the_member_state_and_power_level_in_the_room(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, _ = await started(platforms, room)
    agent = await platform.standing(room, ChatUserId(world.agent.user_id))
    member = await platform.standing(room, ChatUserId(world.member.user_id))
    assert (agent.member, agent.power_level, member.member, member.power_level) == (
        True,
        50,
        True,
        0,
    )
    stranger = world.hs.register(f"stranger-{uuid.uuid4().hex[:6]}")
    outsider = await platform.standing(room, ChatUserId(stranger.user_id))
    assert outsider.member is False


async def test_ticket_state_is_one_reaction_on_the_root(world: World, platforms: Factory) -> None:
    room = world.new_room()
    platform, _ = await started(platforms, room)
    root = await platform.post(outgoing(room, Rich.of("ticket #11")))
    thread = ThreadRef("matrix", room, root)

    await platform.mark(thread, "closed")
    await platform.mark(thread, "closed")
    assert _bot_reactions(world, room, root) == ["✅"]
    await platform.mark(thread, "open")
    assert _bot_reactions(world, room, root) == []
    await platform.mark(thread, "closed")
    assert _bot_reactions(world, room, root) == ["✅"]


async def test_an_encrypted_room_is_refused_by_name(world: World, platforms: Factory) -> None:
    plain, secret = world.new_room(), world.new_room(encrypted=True)
    platform = platforms([plain, secret])
    rec = Recorder()
    with pytest.raises(PlatformRefused, match=secret.replace("!", r"\!")) as refused:
        await platform.start(rec.on_message, rec.on_command, rec.on_action)
    assert "encrypt" in str(refused.value)
    sent = [e for e in _messages(world, secret) if e["sender"] == world.bot.user_id]
    assert [e["type"] for e in sent] == ["m.room.member"], "joined, and sent nothing"


async def test_a_room_encrypted_later_gets_no_plaintext(world: World, platforms: Factory) -> None:
    room = world.new_room()
    platform, _ = await started(platforms, room)
    world.hs.enable_encryption(world.admin, room)
    await _eventually(lambda: room in str(platform.health()["error"]))

    with pytest.raises(PlatformRefused, match="encrypted"):
        await platform.post(outgoing(room, Rich.of("ticket #12")))
    assert all(e["type"] != "m.room.message" for e in _messages(world, room))


async def test_a_dropped_connection_is_retried_and_shown_in_health(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    async with _Proxy(world.hs.port) as proxy:
        platform = platforms([room], access_token=world.bot.access_token)
        platform.homeserver = proxy.url
        rec = Recorder()
        await platform.start(rec.on_message, rec.on_command, rec.on_action)
        assert platform.health()["connected"] is True
        assert platform.health()["last_sync_at"]

        proxy.cut()
        world.hs.send_text(world.agent, room, "sent during the outage")
        await _eventually(lambda: platform.health()["connected"] is False)
        assert platform.health()["error"]
        assert world.bot.access_token not in str(platform.health())

        proxy.restore()
        await rec.until(lambda: rec.texts() == ["sent during the outage"], within=20)
        assert platform.health()["connected"] is True and platform.health()["error"] is None


async def test_an_unreachable_homeserver_is_unavailable(
    world: World, stores: Callable[[], Store]
) -> None:
    store = stores()
    platform = MatrixPlatform(
        f"http://127.0.0.1:{free_port()}",
        world.bot.user_id,
        access_token=world.bot.access_token,
        rooms=[],
        state=store,
        inbox=store,
    )
    rec = Recorder()
    with pytest.raises(Unavailable):
        await platform.start(rec.on_message, rec.on_command, rec.on_action)
    assert platform.health()["connected"] is False


async def test_bad_credentials_are_refused_without_leaking_them(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    for credentials in ({"password": "not-the-password"}, {"access_token": "syt_not_a_token"}):
        platform, rec = platforms([room], **credentials), Recorder()
        with pytest.raises(PlatformRefused) as refused:
            await platform.start(rec.on_message, rec.on_command, rec.on_action)
        secret = next(iter(credentials.values()))
        assert secret not in str(refused.value) and secret not in str(platform.health())
        assert platform.health()["connected"] is False


# --- helpers


def _hrefs(content: dict[str, Any]) -> str:
    return " ".join(p.split('"')[0] for p in content["formatted_body"].split('href="')[1:])


def _messages(world: World, room: str) -> list[dict[str, Any]]:
    return world.hs.messages(world.admin, room)


def _bot_reactions(world: World, room: str, root: str) -> list[str]:
    path = f"/_matrix/client/v1/rooms/{room}/relations/{root}/m.annotation/m.reaction"
    chunk = world.hs.request("GET", path, token=world.admin.access_token)["chunk"]
    return [e["content"]["m.relates_to"]["key"] for e in chunk if e["sender"] == world.bot.user_id]


async def _highlighted(hs: Homeserver, user: MatrixUser, event_id: str, wait: bool = True) -> bool:
    """Whether `event_id` is among the user's highlight notifications (a real ping)."""

    def check() -> bool:
        reply = hs.request(
            "GET",
            "/_matrix/client/v3/notifications",
            token=user.access_token,
            query={"only": "highlight"},
        )
        return any(n["event"]["event_id"] == event_id for n in reply["notifications"])

    if not wait:
        return await asyncio.to_thread(check)
    try:
        await _eventually(check, threaded=True)
    except AssertionError:
        return False
    return True


async def _eventually(
    condition: Callable[[], bool], within: float = 10.0, threaded: bool = False
) -> None:
    deadline = time.monotonic() + within
    while not (await asyncio.to_thread(condition) if threaded else condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


class _Proxy:
    """A TCP relay to Synapse that a test can cut and restore, like a flaky network."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> _Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.close()

    def restore(self) -> None:
        self.up = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_a_command_names_users_by_their_pill() -> None:
    from adapters.matrix.parse import with_user_ids

    content = {
        "format": "org.matrix.custom.html",
        "formatted_body": (
            '!ticket assign 5 <a href="https://matrix.to/#/@asha:hs">Asha &amp; co</a>'
        ),
    }
    assert with_user_ids("!ticket assign 5 Asha & co", content) == "!ticket assign 5 @asha:hs"
    assert with_user_ids("!close", {"body": "!close"}) == "!close"


def test_a_message_addressed_to_the_bot_is_a_command() -> None:
    from adapters.matrix.parse import with_user_ids

    content = {
        "format": "org.matrix.custom.html",
        "formatted_body": '<a href="https://matrix.to/#/@seva:hs">Seva</a>: close done',
    }
    text = with_user_ids("Seva: close done", content)
    assert command_text(text, ["@seva:hs"]) == "close done"
    assert command_text("@asha:hs: thanks", ["@seva:hs"]) is None


async def test_update_edits_our_message_in_place(world: World, platforms: Factory) -> None:
    room = world.new_room()
    platform, _ = await started(platforms, room)
    original = await platform.post(outgoing(room, Rich.of("React with ✅ to send")))
    await platform.update(room, MessageId(original), Rich.of("Sent by ", Text("<b>x</b>")))
    edits = [
        e
        for e in world.hs.messages(world.admin, room)
        if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
    ]
    (edit,) = edits
    assert edit["content"]["m.relates_to"]["event_id"] == original
    assert edit["content"]["m.new_content"]["body"] == "Sent by <b>x</b>"
    assert "&lt;b&gt;" in edit["content"]["m.new_content"]["formatted_body"]


# --- What the Matrix spec asks (facts-issue7 sections 17-20)


async def test_the_thread_fallback_replies_to_the_latest_message_not_the_root(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, rec = await started(platforms, room)
    root = await platform.post(outgoing(room, Rich.of("ticket #30"), ticket=30))
    first = await platform.post(outgoing(room, Rich.of("first in thread"), thread_root=root))
    assert world.hs.event(world.admin, room, first)["content"]["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},  # nothing else in the thread yet
    }
    reply = world.hs.send_thread_reply(world.agent, room, root, "an agent's answer")
    await rec.until(lambda: len(rec.messages) == 1)
    later = await platform.post(outgoing(room, Rich.of("after it"), thread_root=root))
    relates = world.hs.event(world.admin, room, later)["content"]["m.relates_to"]
    assert relates["event_id"] == root and relates["m.in_reply_to"] == {"event_id": reply}


async def test_an_edit_mentions_at_the_top_only_whom_it_adds(
    world: World, platforms: Factory
) -> None:
    room = world.new_room()
    platform, _ = await started(platforms, room)
    agent, member = ChatUserId(world.agent.user_id), ChatUserId(world.member.user_id)
    original = await platform.post(outgoing(room, Rich.of("for ", Mention(agent))))
    await platform.update(
        room, MessageId(original), Rich.of("for ", Mention(agent), " and ", Mention(member))
    )
    (edit,) = [
        e
        for e in world.hs.messages(world.admin, room)
        if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
    ]
    assert edit["content"]["m.mentions"] == {"user_ids": [member]}
    assert edit["content"]["m.new_content"]["m.mentions"] == {"user_ids": [agent, member]}
    # A new process knows nothing in memory: it reads the mentions off the event.
    again, _ = await started(platforms, room)
    await again.update(room, MessageId(original), Rich.of("for ", Mention(member)))
    edits = [
        e["content"]
        for e in world.hs.messages(world.admin, room)
        if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
    ]
    assert {"user_ids": []} in [c["m.mentions"] for c in edits]  # removing pings nobody


async def test_a_gap_too_long_to_back_fill_is_logged_with_its_size(
    world: World, platforms: Factory, stores: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    room = world.new_room()
    state = stores()
    first, _ = await started(platforms, room, state)
    await first.stop()
    for i in range(12):
        world.hs.send_text(world.agent, room, f"while down {i}")
    caplog.set_level("INFO", logger="seva.adapters.matrix.sync")
    _, rec = await started(platforms, room, state, timeline_limit=3, gap_pages=2, gap_page_size=2)
    await rec.until(lambda: "while down 11" in rec.texts())
    (line,) = [r.getMessage() for r in caplog.records if "matrix.gap.too_long" in r.getMessage()]
    assert f"room={room!r}" in line and "at_least=4" in line  # two pages of two, then stopped
    assert rec.texts() == [f"while down {i}" for i in range(5, 12)]  # 4 back-filled + 3 in sync


def test_retry_after_is_honoured_before_retry_after_ms() -> None:
    from datetime import UTC, datetime, timedelta

    from adapters.matrix.parse import retry_delay

    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    # Only the header, as the spec prefers since v1.10: waited out, not nio's 5 s.
    assert retry_delay({"Retry-After": "42"}, None, now) == timedelta(seconds=42)
    assert retry_delay({"Retry-After": "Mon, 30 Nov 2026 12:01:30 GMT"}, None, now) == (
        timedelta(seconds=90)
    )
    assert retry_delay({"Retry-After": "3"}, 9000, now) == timedelta(seconds=3)
    assert retry_delay({}, 1500, now) == timedelta(milliseconds=1500)
    assert retry_delay(None, None, now) is None
